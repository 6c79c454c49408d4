"""Golden cases for the LMEDS similarity fit facexlib's FaceRestoreHelper uses:
cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS).

Five detected landmarks per case: the FFHQ-512 template moved by a random similarity (scale
0.1-3, angle +-1 rad, shift +-300 px), plus Gaussian noise of 0.1-3 px; every third case has
one landmark thrown 30 px (sd) off. Inputs are rounded to f32 (what cv2 computes on).

tests/fixtures/align/lmeds.json: {"cases": [{"src", "dst", "matrix" (2x3, src -> dst),
"inliers" (cv2's mask)}], ...}

Run: /work/venv/bin/python tools/reference/gen_lmeds_golden.py
"""

import json
import os

import cv2
import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "align", "lmeds.json")
TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.19360], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]])


def main():
    rng = np.random.default_rng(17)
    cases = []
    for k in range(200):
        s, th = rng.uniform(0.1, 3.0), rng.uniform(-1.0, 1.0)
        t = rng.uniform(-300.0, 300.0, 2)
        r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) * s
        src = (TEMPLATE - t) @ np.linalg.inv(r).T
        src = src + rng.normal(0.0, rng.uniform(0.1, 3.0), src.shape)
        if k % 3 == 0:
            src[rng.integers(5)] += rng.normal(0.0, 30.0, 2)
        src = src.astype(np.float32)
        dst = TEMPLATE.astype(np.float32)
        m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        cases.append({"src": src.astype(float).tolist(), "dst": dst.astype(float).tolist(),
                      "matrix": m.tolist(), "inliers": inliers.ravel().astype(int).tolist()})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"reference": f"cv2.estimateAffinePartial2D(method=cv2.LMEDS), opencv {cv2.__version__}",
                   "cases": cases}, f)
        f.write("\n")
    print(f"{len(cases)} cases, {os.path.getsize(OUT) / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
