"""Golden fixtures for RetinaFace, from PyPI facexlib 0.3.0's own modules with random weights.

facexlib's `detection/retinaface.py` (the `RetinaFace` class FaceRestoreHelper uses) is loaded
without running facexlib's package __init__ (which pulls in every other face tool), and run on
a small synthetic BGR image (150x174: odd sizes, so the FPN's nearest upsampling crops on one
axis and not the other). For each variant (resnet50, mobilenet0.25):

  tests/fixtures/retinaface/{resnet50,mobilenet0.25}/
    config.json   variant, size, thresholds, counts, the decision margins of this draw
                  (how far every score is from the threshold and every IoU that NMS compared
                  is from its threshold), and the measured error of facexlib's own f32 run
                  against the f64 reference
    image.png     the image facexlib was given (a BGR uint8 array, written by cv2 as RGB)
    io.safetensors
      loc, conf, landmarks   [P, 4], [P, 2] (softmax), [P, 10]: the network's outputs
      detections  [K, 15]: `detect_faces` (threshold 0.8, NMS 0.4, origin size): box,
                  score, 5 landmarks (x, y), best first
      detections_f32  [K, 15]: the same from facexlib's whole f32 pipeline (the network in
                  float32, as facexlib runs it): what our f32 detector is compared with end to
                  end. config.json's facexlib_f32_detections says how far it is from the f64
                  rows (matched row to row: kept neighbours with tied scores may swap places)
    weights.pth   (mobilenet0.25 only) the whole random state dict as torch.save writes it,
                  keys under `module.` like the published checkpoint, num_batches_tracked
                  included, floats as f16 to stay small (the reference uses the same
                  f16-rounded values): loaded by our .pth reader
    stats.pth     (resnet50 only) the batch norms' running_mean / running_var; the other
                  25 M weights are too large to commit and are drawn from the formula below,
                  which tests/face_retinaface.rs reproduces bit for bit

Random weights (both variants), per state-dict key, element i, from splitmix64 over the
key's FNV-1a hash: u = splitmix64(fnv1a64(key) + (i + 1) * 0x9E3779B97F4A7C15) >> 11, as a
53-bit fraction in [0, 1); value = f32(mean + (2u - 1) * (sqrt(3) * std)) (uniform with that
mean and standard deviation), with
  4-D `.weight` (convolutions)     mean 0, std 1 / sqrt(fan_in)
  1-D `.weight` (batch-norm gains) mean 1, std 0.2
  `.bias`                          mean 0, std 0.1
The batch norms' running statistics are calibrated on the image (each norm's input mean and
variance, jittered with a seeded torch generator, rounded to f32), so activations stay O(1)
through 50 layers as they would with trained weights.

Weights and the image are f32; the reference runs the network in float64 (facexlib's
`detect_faces` itself, with the model in double) and results are stored as f32.

Run: /work/venv/bin/python tools/reference/gen_retinaface_golden.py
(needs torch, torchvision, opencv-python-headless, numpy, safetensors, and facexlib==0.3.0
installed with --no-deps)
"""

import importlib.util
import json
import math
import os
import sys
import types

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon as rc  # noqa: E402

OUT_DIR = os.path.join(rc.FIXTURES, "retinaface")
H, W = 150, 174
CONF, NMS = 0.8, 0.4
MASK = (1 << 64) - 1
# facexlib's network names -> fixture folders (named like the published checkpoints).
FOLDER = {"resnet50": "resnet50", "mobile0.25": "mobilenet0.25"}


def load_facexlib_retinaface():
    """facexlib.detection.retinaface without facexlib/__init__.py and detection/__init__.py."""
    spec = importlib.util.find_spec("facexlib")
    root = list(spec.submodule_search_locations)[0]
    for name, path in [("facexlib", root), ("facexlib.detection", os.path.join(root, "detection"))]:
        mod = types.ModuleType(name)
        mod.__path__ = [path]
        sys.modules[name] = mod
    import facexlib.detection.retinaface as rf
    return rf


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def uniform01(key, n):
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(key)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def formula(key, shape):
    if key.endswith(".weight") and len(shape) == 4:
        mean, std = 0.0, 1.0 / math.sqrt(shape[1] * shape[2] * shape[3])
    elif key.endswith(".weight"):
        mean, std = 1.0, 0.2
    elif key.endswith(".bias"):
        mean, std = 0.0, 0.1
    else:
        raise KeyError(key)
    u = uniform01(key, int(np.prod(shape)))
    v = mean + (2.0 * u - 1.0) * (math.sqrt(3.0) * std)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def image(g):
    """Smooth colour fields plus fine noise, as BGR uint8 (facexlib's input)."""
    coarse = rc.uniform((1, 3, H // 10, W // 10), g, 0.0, 255.0)
    smooth = torch.nn.functional.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
    img = (smooth + rc.randn((1, 3, H, W), g, 20.0)).clamp(0, 255).round()
    return img[0].permute(1, 2, 0).to(torch.uint8).numpy().copy()


def calibrate(model, x, g):
    """Running statistics from each norm's input on x (in order), jittered, rounded to f32."""
    def hook(bn, args):
        inp = args[0]
        m = inp.mean(dim=(0, 2, 3))
        v = inp.var(dim=(0, 2, 3), unbiased=False)
        c = m.numel()
        jm = rc.randn((c,), g, 0.1).to(inp.dtype)
        jv = rc.uniform((c,), g, 0.8, 1.25).to(inp.dtype)
        bn.running_mean.copy_((m + jm * v.sqrt()).float().to(inp.dtype))
        bn.running_var.copy_((v * jv).float().clamp_min(1e-3).to(inp.dtype))
    hooks = [m.register_forward_pre_hook(hook) for m in model.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def matched_max_abs(a, b):
    """Largest difference between two detection lists [K, 15] matched row to row, each row of
    `a` to the nearest of `b` (kept neighbours whose scores tie within rounding may swap
    places; the set is what must agree). None when the counts differ or two rows of `a`
    share their nearest row."""
    if a.shape != b.shape:
        return None
    if len(a) == 0:
        return 0.0
    d = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)
    nearest = d.argmin(axis=1)
    if len(set(nearest.tolist())) != len(a):
        return None
    return float(d[np.arange(len(a)), nearest].max())


def margins(scores, boxes):
    """How far this draw's decisions are from flipping: every score from the threshold, every
    IoU greedy NMS compares from its threshold, score gaps between candidates NMS ranks
    against each other (a suppressing pair, or two kept neighbours)."""
    m_score = float(np.min(np.abs(scores - CONF)))
    cand = np.where(scores > CONF)[0]
    order = cand[np.argsort(-scores[cand], kind="stable")]
    b = boxes[order].astype(np.float64)
    s = scores[order]
    dead = np.zeros(len(order), bool)
    m_iou, m_gap, kept = 1.0, 1.0, []
    for i in range(len(order)):
        if dead[i]:
            continue
        kept.append(i)
        for j in range(i + 1, len(order)):
            if dead[j]:
                continue
            o = iou(b[i], b[j])
            m_iou = min(m_iou, abs(o - NMS))
            if o > NMS:
                dead[j] = True
                m_gap = min(m_gap, s[i] - s[j])
    for a, c in zip(kept, kept[1:]):
        m_gap = min(m_gap, s[a] - s[c])
    return {"score_to_threshold": m_score, "iou_to_threshold": m_iou, "score_gap": float(m_gap),
            "candidates": int(len(order)), "kept": len(kept)}


def run_variant(rf, variant, seed):
    g = rc.generator(seed)
    model = rf.RetinaFace(network_name=variant, half=False, device="cpu")
    sd = model.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if k.endswith(".weight") or k.endswith(".bias"):
                v.copy_(formula(k, tuple(v.shape)))
    img = image(g)
    x = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1)).unsqueeze(0)
    x = x - model.mean_tensor
    model.double()
    calibrate(model, x.double(), g)
    if variant == "mobile0.25":
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.is_floating_point():
                    v.copy_(v.half().double())

    # facexlib's own pipeline, the network in f64 (its f32 tensors promote around it).
    net_forward = model.forward
    model.forward = lambda inp: net_forward(inp.double())
    with torch.no_grad():
        loc, conf, landm = model(x)
        dets = model.detect_faces(img, conf_threshold=CONF, nms_threshold=NMS)
    loc, conf, landm = loc[0], conf[0], landm[0]

    # facexlib's own f32 run, to state how far f32 arithmetic is from the reference.
    model.forward = net_forward
    model.float()
    with torch.no_grad():
        loc32, conf32, landm32 = model(x)
    f32_err = {n: float(((a[0].double() - b).abs().max() / b.abs().max()).item())
               for n, a, b in [("loc", loc32, loc), ("conf", conf32, conf), ("landmarks", landm32, landm)]}
    # facexlib's whole f32 pipeline (the network in f32, as it runs by default): the
    # detections our f32 detector is compared with end to end.
    with torch.no_grad():
        dets32 = np.asarray(model.detect_faces(img, conf_threshold=CONF, nms_threshold=NMS), dtype=np.float64)
    dets64 = np.asarray(dets, dtype=np.float64)
    f32_dets = {"count": int(len(dets32)), "max_abs_vs_f64": matched_max_abs(dets32, dets64)}

    # The boxes NMS sees, as detect_faces builds them (f32), for the decision margins.
    priors = rf.PriorBox(model.cfg, image_size=(H, W)).forward().double()
    boxes = rf.decode(loc, priors, model.cfg["variance"]) * torch.tensor([W, H, W, H], dtype=torch.float64)
    m = margins(conf[:, 1].numpy(), boxes.float().numpy())

    folder = os.path.join(OUT_DIR, FOLDER[variant])
    os.makedirs(folder, exist_ok=True)
    import cv2
    assert cv2.imwrite(os.path.join(folder, "image.png"), img)
    io = {"loc": loc, "conf": conf,
          "landmarks": landm, "detections": torch.from_numpy(dets64),
          "detections_f32": torch.from_numpy(dets32)}
    save_file(rc.to_f32(io), os.path.join(folder, "io.safetensors"))
    state = rc.state_dict_f32(model)
    if variant == "mobile0.25":
        half = {"module." + k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        torch.save(half, os.path.join(folder, "weights.pth"))
    else:
        stats = {k: v for k, v in state.items() if k.endswith("running_mean") or k.endswith("running_var")}
        torch.save(stats, os.path.join(folder, "stats.pth"))
    config = {
        "variant": variant, "height": H, "width": W, "conf_threshold": CONF, "nms_threshold": NMS,
        "seed": seed, "priors": int(loc.shape[0]), "detections": int(len(dets)),
        "margins": m, "facexlib_f32_vs_f64_max_rel": f32_err, "facexlib_f32_detections": f32_dets,
        "reference": "facexlib 0.3.0 detection/retinaface.py, RetinaFace.detect_faces, network in float64",
    }
    rc.write_json(os.path.join(folder, "config.json"), config)
    print(f"{variant:11s} seed {seed} priors {loc.shape[0]} candidates {m['candidates']} kept {m['kept']} "
          f"margins score {m['score_to_threshold']:.1e} iou {m['iou_to_threshold']:.1e} gap {m['score_gap']:.1e} "
          f"f32 err {max(f32_err.values()):.1e} f32 dets {f32_dets} conf std {conf[:, 1].std().item():.3f} "
          f"size {rc.dir_size(folder) / 1e3:.0f} KB")
    return m, f32_dets


def main():
    rf = load_facexlib_retinaface()
    for variant in FOLDER:
        # Draws until no decision is within 2e-5 of flipping (f32 arithmetic moves scores and
        # IoUs by about 1e-6), so the detections are a property of the network, not of noise.
        for seed in range(100, 140):
            m, f32_dets = run_variant(rf, variant, seed)
            if min(m["score_to_threshold"], m["iou_to_threshold"], m["score_gap"]) >= 2e-5 and m["kept"] >= 3:
                break
        else:
            sys.exit(f"{variant}: no seed with clear decisions")


if __name__ == "__main__":
    main()
