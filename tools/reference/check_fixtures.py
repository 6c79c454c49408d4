"""Re-check the committed UNet and SwinIR fixtures from the files alone.

Loads each weights.safetensors into a freshly built third-party module (the
config.json says which), reruns it in float64 on the stored inputs, and
compares with the stored out / grad_x. This catches a fixture whose files
disagree with each other (wrong weights file, stale io, key mix-ups), which
the generators themselves cannot see.

Run: /work/venv/bin/python tools/reference/check_fixtures.py
"""

import json
import os
import sys
import warnings

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore")

import gen_swinir_golden as sw  # noqa: E402
import gen_unet_golden as gu  # noqa: E402
import refcommon as rc  # noqa: E402

TOL = 2e-6  # relative to the tensor's max magnitude: f32 storage rounding only


def close(name, got, want):
    scale = want.abs().max().item()
    err = (got.float() - want).abs().max().item()
    ok = err <= TOL * max(scale, 1.0)
    print(f"  {name:14s} max err {err:.2e} (scale {scale:.2f}) {'ok' if ok else 'MISMATCH'}")
    return ok


def check_unet(folder):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    args = {k: cfg[k] for k in ("image_size", "in_channels", "model_channels", "out_channels",
                                "num_res_blocks", "attention_resolutions", "channel_mult",
                                "num_heads", "num_head_channels", "use_scale_shift_norm",
                                "resblock_updown", "use_new_attention_order")}
    if cfg["reference"].startswith("guided_diffusion"):
        model = gu.sdk_model(args)
    else:
        model = gu.difface_model(args)
    weights = load_file(os.path.join(folder, cfg["weights_file"]))
    model.load_state_dict(weights, strict=True)
    io = load_file(os.path.join(folder, "io.safetensors"))
    model.double().eval()
    if hasattr(model, "dtype"):
        model.dtype = torch.float64
    with rc.float64_everywhere():
        out, (gx,) = rc.vjp(lambda x: model(x, io["t"].double()), [io["x"].double()],
                            io["cotangent"].double())
    return close("out", out, io["out"]) & close("grad_x", gx, io["grad_x"])


def check_swinir(folder):
    name = os.path.basename(folder)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    io = load_file(os.path.join(folder, "io.safetensors"))
    arch = sw.arch
    if name == "window_attention":
        w = cfg["window_size"]
        m = arch.WindowAttention(cfg["dim"], window_size=(w, w), num_heads=cfg["num_heads"])
        fn = lambda x: m(x, mask=io["mask"].double())  # noqa: E731
    elif name.startswith("block"):
        res = tuple(cfg["input_resolution"])
        m = arch.SwinTransformerBlock(dim=cfg["dim"], input_resolution=res, num_heads=cfg["num_heads"],
                                      window_size=cfg["window_size"], shift_size=cfg["shift_size"],
                                      mlp_ratio=cfg["mlp_ratio"])
        fn = lambda x: m(x, res)  # noqa: E731
    elif name == "rstb":
        res = tuple(cfg["input_resolution"])
        m = arch.RSTB(dim=cfg["dim"], input_resolution=res, depth=cfg["depth"],
                      num_heads=cfg["num_heads"], window_size=cfg["window_size"],
                      mlp_ratio=cfg["mlp_ratio"], img_size=res[0], patch_size=1)
        fn = lambda x: m(x, res)  # noqa: E731
    else:
        keys = ("img_size", "patch_size", "in_chans", "embed_dim", "depths", "num_heads",
                "window_size", "mlp_ratio", "upscale", "img_range", "upsampler", "resi_connection")
        m = arch.SwinIR(drop_path_rate=0.0, **{k: cfg[k] for k in keys})
        fn = m
    m.load_state_dict(load_file(os.path.join(folder, "weights.safetensors")), strict=True)
    m.double().eval()
    out, (gx,) = rc.vjp(fn, [io["x"].double()], io["cotangent"].double())
    ok = close("out", out, io["out"]) & close("grad_x", gx, io["grad_x"])
    if name == "window_attention":
        out, (gx,) = rc.vjp(m, [io["x"].double()], io["cotangent"].double())
        ok &= close("out_nomask", out, io["out_nomask"]) & close("grad_x_nomask", gx, io["grad_x_nomask"])
    return ok


def main():
    ok = True
    for kind, check in (("unet", check_unet), ("swinir", check_swinir)):
        root = os.path.join(rc.FIXTURES, kind)
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if os.path.isdir(folder):
                print(f"{kind}/{name}")
                ok &= check(folder)
    print("all fixtures consistent" if ok else "SOME FIXTURES DISAGREE")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
