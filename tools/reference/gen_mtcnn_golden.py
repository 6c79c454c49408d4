"""Golden fixture for our MTCNN: facenet-pytorch 2.6.0's own `MTCNN.detect` with its real
weights on the shared whole photos (../shared/data/photos), decoded by OUR decoder.

The photos' licences forbid copying them, so the fixture holds numbers only; the test
(tests/face_mtcnn_golden.rs) reads the same photos by path. JPEG decoders differ by a few
levels per pixel (libjpeg-turbo in PIL vs the Rust `image` crate), which moved boxes by up
to 2.4 px when each side decoded the JPEGs itself. So this script does not decode: it runs
`dynface debug decode` (the loader every detector input goes through) and feeds those
uint8 [H, W, 3] arrays to facenet-pytorch, which accepts numpy images as they are. The
SHA-256 of each decoded array is stored, and the test checks it against its own decode, so
a changed decoder fails by name instead of as a detection difference.

The weights: facenet-pytorch's installed data/{pnet,rnet,onet}.pt must have the SHA-256s that
src/face/detect/mtcnn_weights.rs pins (the files `dynface weights mtcnn` reads from the wheel);
this script refuses to run otherwise.

  tests/fixtures/mtcnn/photos.json
    options         min_face, thresholds, factor (facenet-pytorch's defaults, which are ours)
    photos[]        file, width, height, rgb_sha256, and faces[] (best probability first):
                    box [x1, y1, x2, y2], prob, landmarks [[x, y] x 5], all from the f32 run
                    as facenet-pytorch returns them (f32 values written exactly)
                    f64_vs_f32: the same detector with the networks in float64, how far its
                    boxes / landmarks (px) and probabilities are from the f32 run: what f32
                    arithmetic alone moves, a yardstick for the test's tolerances

Run (after `cargo build`, which makes target/debug/dynface):
    /work/venv/bin/python tools/reference/gen_mtcnn_golden.py [--dynface PATH] [--photos DIR]
(needs torch, torchvision, numpy and facenet-pytorch==2.6.0, installed with --no-deps)
"""

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "mtcnn", "photos.json")
# facenet-pytorch's MTCNN defaults; MtcnnOptions::default() holds the same (the test checks).
MIN_FACE, THRESHOLDS, FACTOR = 20, [0.6, 0.7, 0.7], 0.709


def pinned_sha256():
    src = open(os.path.join(ROOT, "src", "face", "detect", "mtcnn_weights.rs")).read()
    block = re.search(r"pub const SHA256: \[&str; 3\] = \[(.*?)\];", src, re.S).group(1)
    pins = re.findall(r'"([0-9a-f]{64})"', block)
    assert len(pins) == 3, pins
    return dict(zip(["pnet", "rnet", "onet"], pins))


def check_weights():
    version = metadata.version("facenet-pytorch")
    if version != "2.6.0":
        sys.exit(f"facenet-pytorch {version} installed; the pins are for 2.6.0")
    import facenet_pytorch
    data = os.path.join(os.path.dirname(facenet_pytorch.__file__), "data")
    for net, want in pinned_sha256().items():
        with open(os.path.join(data, f"{net}.pt"), "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != want:
            sys.exit(f"{net}.pt: SHA-256 {got}, mtcnn_weights.rs pins {want}")
        print(f"{net}.pt SHA-256 {got} = the pin")


def decode(dynface, photos, tmp):
    """Our decoder's pixels: `dynface debug decode` writes <file name>.npy per photo."""
    if not os.access(dynface, os.X_OK):
        sys.exit(f"{dynface} not found: run `cargo build` first, or pass --dynface")
    subprocess.run([dynface, "debug", "decode", *photos, "--out", tmp], check=True,
                   stdout=subprocess.DEVNULL)
    out = {}
    for p in photos:
        a = np.load(os.path.join(tmp, os.path.basename(p) + ".npy"))
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3, a.shape
        out[p] = a
    return out


def run(mtcnn, img):
    """Faces, best probability first (select_largest=False sorts by probability)."""
    boxes, probs, points = mtcnn.detect(img, landmarks=True)
    if boxes is None:
        return []
    return [{"box": [float(v) for v in b], "prob": float(p),
             "landmarks": [[float(v) for v in q] for q in pts]}
            for b, p, pts in zip(boxes, probs, points)]


def f64_vs_f32(f32, f64):
    """Max differences between two runs' faces, each f32 face matched to the f64 face nearest
    to it (probabilities near 1 tie within rounding, so the order may differ); a different
    count, or two faces with the same nearest one, is reported as such."""
    if len(f32) != len(f64):
        return {"count_f32": len(f32), "count_f64": len(f64)}
    coords = lambda f: np.array(f["box"] + [v for q in f["landmarks"] for v in q])
    px = prob = 0.0
    taken = set()
    for a in f32:
        d = [np.abs(coords(a) - coords(b)).max() for b in f64]
        j = int(np.argmin(d))
        if j in taken:
            return {"unmatched": True}
        taken.add(j)
        px = max(px, float(d[j]))
        prob = max(prob, abs(a["prob"] - f64[j]["prob"]))
    return {"max_px": px, "max_prob": prob}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dynface", default=os.path.join(ROOT, "target", "debug", "dynface"))
    ap.add_argument("--photos", default=os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "photos")))
    args = ap.parse_args()
    check_weights()
    from facenet_pytorch import MTCNN

    torch.manual_seed(0)
    photos = sorted(glob.glob(os.path.join(args.photos, "*.jpg")) + glob.glob(os.path.join(args.photos, "*.png")))
    if not photos:
        sys.exit(f"no photos in {args.photos}")
    mtcnn = MTCNN(min_face_size=MIN_FACE, thresholds=THRESHOLDS, factor=FACTOR,
                  select_largest=False, keep_all=True, device="cpu").eval()
    mtcnn64 = MTCNN(min_face_size=MIN_FACE, thresholds=THRESHOLDS, factor=FACTOR,
                    select_largest=False, keep_all=True, device="cpu").eval().double()
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, img in decode(args.dynface, photos, tmp).items():
            faces = run(mtcnn, img)
            yard = f64_vs_f32(faces, run(mtcnn64, img))
            entries.append({
                "file": os.path.basename(path), "width": int(img.shape[1]), "height": int(img.shape[0]),
                "rgb_sha256": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest(),
                "faces": faces, "f64_vs_f32": yard,
            })
            print(f"{os.path.basename(path):24s} {img.shape[1]}x{img.shape[0]} {len(faces)} faces, "
                  f"probs {[round(f['prob'], 5) for f in faces]}, f64 vs f32 {yard}")
    doc = {
        "reference": "facenet-pytorch 2.6.0 MTCNN.detect(landmarks=True), select_largest=False, "
                     "keep_all=True, CPU, float32, on the pixels of `dynface debug decode`",
        "torch": torch.__version__,
        "options": {"min_face": MIN_FACE, "thresholds": THRESHOLDS, "factor": FACTOR},
        "photos": entries,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
