"""Golden fixture for DISTS, from the DISTS-pytorch 0.1 package (DISTS_pytorch/DISTS_pt.py),
the perceptual term of DGSA's loss.

The package builds its VGG16 from torchvision's ImageNet download, which this machine cannot
reach, so its `models.vgg16` is pointed at an untrained torchvision VGG16 and every
convolution then gets seeded values from `vgg_weight` below, a counter-based generator
(splitmix64) that tests/dists_golden.rs repeats bit for bit: the fixture then needs no 59 MB
weights file. α and β are the package's own `weights.pt` (MIT licence, Keyan Ding 2020),
stored in the fixture so no test needs the wheel.

tests/fixtures/dists/:
  io.safetensors  x, y [2, 3, 64, 64] on [0, 1]; alpha, beta [1, 1475, 1, 1]; cotangent [2];
                  score [2] (DISTS(x, y) per image); grad_x, grad_y (d<score, cotangent>/dx, /dy).
                  Inputs and weights drawn in f32, the package run in float64, results stored
                  as f32.
  config.json     the weight generator, the sizes, torch's own f32 deviation from the f64
                  reference (a yardstick for the f32 tolerance), and the SHA-256 of weights.pt.

Run: /work/venv/bin/python tools/reference/gen_dists_golden.py
(needs `pip install --no-deps DISTS-pytorch==0.1` and torchvision in the venv)
"""

import hashlib
import os
import sys

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon as rc  # noqa: E402

from DISTS_pytorch import DISTS_pt  # noqa: E402

OUT_DIR = os.path.join(rc.FIXTURES, "dists")
SEED = 0x0D15_7500
SIZE = 64
BATCH = 2
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(counter):
    """splitmix64's output function on uint64 counters (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = counter * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def vgg_weight(layer, is_bias, shape):
    """Uniform on [-1, 1) from the top 24 bits of splitmix64(seed + stream·2³² + i + 1),
    times f32(√(6/fan_in)) (He-uniform) for weights, f32(0.1) for biases; all in f32."""
    n = int(np.prod(shape))
    stream = 2 * layer + (1 if is_bias else 0)
    base = (SEED + (stream << 32) + 1) & MASK
    z = splitmix64(np.uint64(base) + np.arange(n, dtype=np.uint64))
    u = (z >> np.uint64(40)).astype(np.float32) / np.float32(1 << 23) - np.float32(1.0)
    if is_bias:
        scale = np.float32(0.1)
    else:
        scale = np.float32(np.sqrt(6.0 / (shape[1] * shape[2] * shape[3])))
    return torch.from_numpy((u * scale).astype(np.float32).reshape(shape))


def build(alpha, beta):
    # The package asks torchvision for pretrained weights; an untrained VGG16 stands in.
    # (DISTS_pt.models is torchvision.models itself: restored right after.)
    original = torchvision.models.vgg16
    DISTS_pt.models.vgg16 = lambda pretrained=False: original(weights=None)
    try:
        model = DISTS_pt.DISTS(load_weights=False)
    finally:
        DISTS_pt.models.vgg16 = original
    model.alpha.data = alpha.clone()
    model.beta.data = beta.clone()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("stage"):
                # stageK.N.weight: N is the torchvision `features` index
                layer = int(name.split(".")[1])
                p.copy_(vgg_weight(layer, name.endswith("bias"), tuple(p.shape)))
    return model.eval()


def run(model, x, y, cot, dtype):
    m = build(model.alpha.data, model.beta.data).to(dtype)
    xs = x.to(dtype).requires_grad_(True)
    ys = y.to(dtype).requires_grad_(True)
    score = m(xs, ys, require_grad=True)
    gx, gy = torch.autograd.grad(score, [xs, ys], cot.to(dtype))
    return score.detach(), gx.detach(), gy.detach()


def main():
    pkg = os.path.dirname(DISTS_pt.__file__)
    wpath = os.path.join(pkg, "weights.pt")
    raw = open(wpath, "rb").read()
    ab = torch.load(wpath, map_location="cpu", weights_only=True)
    alpha, beta = ab["alpha"].to(torch.float32), ab["beta"].to(torch.float32)
    model = build(alpha, beta)

    g = rc.generator(SEED & 0xFFFF)
    x = rc.uniform((BATCH, 3, SIZE, SIZE), g, 0.0, 1.0)
    # y: x distorted (blur-like mix with a shifted copy plus noise), so the score is far
    # from both 0 and 1 and every term matters.
    noise = rc.uniform((BATCH, 3, SIZE, SIZE), g, -0.2, 0.2)
    y = (0.6 * x + 0.4 * torch.roll(x, shifts=(1, 2), dims=(2, 3)) + noise).clamp(0.0, 1.0)
    y = y.to(torch.float32)
    cot = rc.randn((BATCH,), g, 1.0)

    score, gx, gy = run(model, x, y, cot, torch.float64)
    s32, gx32, gy32 = run(model, x, y, cot, torch.float32)

    def dev(a, b):
        return float((a.double() - b.double()).abs().max() / b.double().abs().max())

    os.makedirs(OUT_DIR, exist_ok=True)
    save_file(rc.to_f32({"x": x, "y": y, "alpha": alpha, "beta": beta, "cotangent": cot,
                         "score": score, "grad_x": gx, "grad_y": gy}),
              os.path.join(OUT_DIR, "io.safetensors"))
    rc.write_json(os.path.join(OUT_DIR, "config.json"), {
        "reference": "DISTS_pytorch 0.1 DISTS.forward(x, y, require_grad=True), float64",
        "seed": SEED,
        "batch": BATCH,
        "size": SIZE,
        "vgg_weights": "splitmix64 counter stream 2*layer (+1 for the bias), see vgg_weight",
        "weights_pt_sha256": hashlib.sha256(raw).hexdigest(),
        "score_f64": score.tolist(),
        "torch_f32_rel_err_score": dev(s32, score),
        "torch_f32_rel_err_grad_x": dev(gx32, gx),
        "torch_f32_rel_err_grad_y": dev(gy32, gy),
    })
    print(f"score {score.tolist()}, torch f32 vs f64: score {dev(s32, score):.2e}, "
          f"grad_x {dev(gx32, gx):.2e}; {rc.dir_size(OUT_DIR) / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
