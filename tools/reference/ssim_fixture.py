#!/usr/bin/env python3
"""Writes the PSNR/SSIM fixture used by `src/metrics` tests.

Three synthetic 64x64 RGB image pairs (smooth random fields, hard edges and
noise; no real photographs) are generated from a fixed seed and saved as PNG
under tests/fixtures/metrics/, with scikit-image's PSNR and SSIM for each pair in
expected.json. SSIM settings are those of Wang et al. 2004 as scikit-image
documents them: gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255, channel_axis=2 (per-channel SSIM averaged).

Run from the repository root:
    PYTHONPATH=/tmp/skimg python3 tools/reference/ssim_fixture.py
(needs numpy, scipy, scikit-image, pillow; e.g.
 `pip install --target /tmp/skimg scikit-image numpy pillow`).
"""
import json
import os

import numpy as np
import scipy.ndimage as ndi
import skimage
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

SEED = 20261126
SIZE = 64
OUT = os.path.join("tests", "fixtures", "metrics")


def smooth_field(rng, sigma):
    """Gaussian-filtered white noise per channel, stretched to 0..255."""
    f = np.stack(
        [ndi.gaussian_filter(rng.standard_normal((SIZE, SIZE)), sigma) for _ in range(3)],
        axis=2,
    )
    f -= f.min()
    f /= f.max()
    return f * 255.0


def edges(rng):
    """A few axis-aligned rectangles and a diagonal half-plane of random colours."""
    img = np.zeros((SIZE, SIZE, 3))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    img[(xx + 0.7 * yy) > rng.uniform(20, 60)] = rng.uniform(0, 255, 3)
    for _ in range(3):
        y0, x0 = rng.integers(0, SIZE - 10, 2)
        h, w = rng.integers(5, 30, 2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
    return img


def to_u8(a):
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT, exist_ok=True)
    pairs = []
    for i in range(3):
        ref = 0.6 * smooth_field(rng, 2.0 + 3.0 * i) + 0.4 * edges(rng)
        ref += rng.normal(0, 3.0, ref.shape)
        # The distorted image: blurred, shifted in brightness, with stronger noise.
        test = np.stack([ndi.gaussian_filter(ref[..., c], 0.8 + 0.7 * i) for c in range(3)], axis=2)
        test += rng.normal(0, 4.0 + 6.0 * i, test.shape) + 5.0 * (i - 1)
        pairs.append((to_u8(ref), to_u8(test)))

    expected = {
        "generator": "tools/reference/ssim_fixture.py",
        "seed": SEED,
        "scikit_image": skimage.__version__,
        "numpy": np.__version__,
        "ssim_settings": {
            "gaussian_weights": True,
            "sigma": 1.5,
            "use_sample_covariance": False,
            "data_range": 255,
            "channel_axis": 2,
        },
        "pairs": [],
    }
    for i, (ref, test) in enumerate(pairs):
        rn, tn = f"pair{i}_ref.png", f"pair{i}_test.png"
        Image.fromarray(ref, "RGB").save(os.path.join(OUT, rn))
        Image.fromarray(test, "RGB").save(os.path.join(OUT, tn))
        psnr = peak_signal_noise_ratio(ref, test, data_range=255)
        ssim = structural_similarity(
            ref,
            test,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        expected["pairs"].append({"ref": rn, "test": tn, "psnr": float(psnr), "ssim": float(ssim)})
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    print(json.dumps(expected["pairs"], indent=2))


if __name__ == "__main__":
    main()
