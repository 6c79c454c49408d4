"""Expected PSNR / SSIM for the Rust metrics tests (tests/fixtures/metrics/).

SYNTHETIC IMAGES ONLY. The HQ faces under ../shared/data/faces are licence
restricted and must not be copied into the repository, not even as crops, so
this script draws its own 64x64 RGB test images from a seed (smooth random
colour fields, hard-edged shapes, fine texture), degrades each with a fixed
numpy operation (Gaussian blur + Gaussian noise, rounded to 8 bits) and stores
both as PNG beside the expected values in metrics.json.

Definitions (the usual face-restoration protocol):
  PSNR  on RGB uint8 values: 10*log10(255^2 / MSE), MSE over all pixels and
        channels.
  SSIM  scikit-image structural_similarity(gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, channel_axis=2): an 11x11
        Gaussian window (radius int(3.5*1.5+0.5) = 5, normalised), K1 0.01,
        K2 0.03, computed per channel and averaged; each channel's SSIM map is
        averaged over the interior only (a 5-pixel border is cropped, where
        the window does not fit), so the filter's border mode does not matter.
A second, independent numpy implementation of that definition checks
scikit-image's numbers here.

Run: /work/venv/bin/python tools/reference/ssim_reference.py
"""

import os
import sys

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon as rc  # noqa: E402

OUT_DIR = os.path.join(rc.FIXTURES, "metrics")
SIZE = 64


def synthetic_image(rng):
    """Smooth colour field + a rectangle + a disk (hard edges) + fine texture."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE
    img = np.zeros((SIZE, SIZE, 3))
    for c in range(3):
        field = rng.uniform(60, 190)
        for _ in range(4):
            fx, fy = rng.uniform(0.5, 3.0, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            field = field + rng.uniform(10, 35) * np.cos(2 * np.pi * (fx * xx + fy * yy) + phase)
        img[..., c] = field
    x0, y0 = rng.integers(4, SIZE // 2, size=2)
    x1, y1 = x0 + rng.integers(12, SIZE // 2), y0 + rng.integers(12, SIZE // 2)
    img[y0:y1, x0:x1] = rng.uniform(0, 255, size=3)
    cx, cy, r = rng.uniform(16, 48), rng.uniform(16, 48), rng.uniform(6, 14)
    disk = (xx * SIZE - cx) ** 2 + (yy * SIZE - cy) ** 2 <= r * r
    img[disk] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 4.0, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def gaussian_kernel(sigma, radius):
    k = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma * sigma))
    return k / k.sum()


def blur_reflect(img, sigma):
    """Separable Gaussian blur, numpy 'symmetric' padding (edge pixel repeated)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    k = gaussian_kernel(sigma, radius)
    out = img.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="symmetric")
        out = sum(
            k[i] * np.take(p, np.arange(i, i + out.shape[axis]), axis=axis) for i in range(len(k))
        )
    return out


def degrade(img, rng, sigma, noise):
    out = blur_reflect(img, sigma) + rng.normal(0, noise, size=img.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10.0 * np.log10(255.0**2 / mse)


def ssim_skimage(a, b):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=2,
    )


def ssim_numpy(a, b):
    """Independent restatement: valid-mode 11x11 Gaussian statistics per channel."""
    k = gaussian_kernel(1.5, 5)
    win = np.outer(k, k)

    def filt(x):
        n = x.shape[0] - 10
        out = np.zeros((n, n))
        for i in range(11):
            for j in range(11):
                out += win[i, j] * x[i:i + n, j:j + n]
        return out

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    per_channel = []
    for c in range(3):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        per_channel.append(s.mean())
    return float(np.mean(per_channel)), per_channel


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    rng = np.random.default_rng(5000)
    degradations = [(0.8, 3.0), (1.5, 8.0), (2.5, 15.0)]  # (blur sigma px, noise std on 0-255)
    pairs = []
    for i, (sigma, noise) in enumerate(degradations):
        ref = synthetic_image(rng)
        dist = degrade(ref, rng, sigma, noise)
        ref_name, dist_name = f"synthetic_{i}_ref.png", f"synthetic_{i}_degraded.png"
        Image.fromarray(ref).save(os.path.join(OUT_DIR, ref_name), optimize=True)
        Image.fromarray(dist).save(os.path.join(OUT_DIR, dist_name), optimize=True)
        # What the Rust side will read back: the PNGs, not the arrays in memory.
        ref = np.asarray(Image.open(os.path.join(OUT_DIR, ref_name)).convert("RGB"))
        dist = np.asarray(Image.open(os.path.join(OUT_DIR, dist_name)).convert("RGB"))

        p = psnr(ref, dist)
        s = ssim_skimage(ref, dist)
        s_np, s_channels = ssim_numpy(ref, dist)
        assert abs(s - s_np) < 1e-10, (s, s_np)
        pairs.append(dict(reference=ref_name, degraded=dist_name, blur_sigma=sigma, noise_std=noise,
                          psnr_rgb=p, ssim_rgb=s, ssim_per_channel_rgb=s_channels))
        print(f"pair {i}: blur {sigma} noise {noise:4.1f}  PSNR {p:.4f} dB  SSIM {s:.6f} "
              f"(numpy restatement differs by {abs(s - s_np):.1e})")
    rc.write_json(os.path.join(OUT_DIR, "metrics.json"), dict(
        images="synthetic, generated by tools/reference/ssim_reference.py (no face data)",
        psnr="RGB uint8, 10*log10(255^2/MSE) over all pixels and channels",
        ssim=("skimage structural_similarity, gaussian_weights=True, sigma=1.5, truncate=3.5 "
              "(11x11), use_sample_covariance=False, K1=0.01, K2=0.03, data_range=255, per RGB "
              "channel then averaged; map mean over the interior (5-px border cropped)"),
        pairs=pairs))
    print(f"tests/fixtures/metrics total {rc.dir_size(OUT_DIR) / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
