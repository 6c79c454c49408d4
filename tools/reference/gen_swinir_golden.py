"""Golden fixtures for the SwinIR block math, from basicsr 1.4.2's swinir_arch.py.

Small versions of the pieces DifFace's restorer is built from (METHOD.md §5:
embed 180, 6 heads, window 8, shift 4 on odd blocks, MLP ratio 2, exact GELU,
LayerNorm eps 1e-5, shift mask -100): embed 12-24, 2-3 heads, window 4 or 8.

tests/fixtures/swinir/<name>/:
  config.json          the module's arguments
  weights.safetensors  the module's state dict with basicsr's key names, f32,
                       including the int64 relative_position_index and the
                       attn_mask buffers (both derived, but present in real
                       checkpoints)
  io.safetensors       inputs, a random cotangent, outputs and input gradients
                       (d<out, cotangent>/d input), computed in float64 and
                       stored as f32. Token tensors are [B, H*W, C] row-major
                       over (h, w), as basicsr lays them out.

Run: /work/venv/bin/python tools/reference/gen_swinir_golden.py
"""

import os
import sys

import warnings

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import basicsr_swinir  # noqa: E402
import refcommon as rc  # noqa: E402

OUT_DIR = os.path.join(rc.FIXTURES, "swinir")
warnings.filterwarnings("ignore", message="torch.meshgrid")
arch = basicsr_swinir.load()


def bias_table(name, p):
    # O(1) relative position biases so they visibly shape the attention.
    if name.endswith("relative_position_bias_table"):
        return p.new_empty(p.shape).copy_(rc.randn(p.shape, _G[0], 0.5))
    return None


_G = [None]


def randomize(module, g):
    _G[0] = g
    rc.randomize_(module, g, extra=bias_table)


def save(name, module, config, io, note):
    folder = os.path.join(OUT_DIR, name)
    os.makedirs(folder, exist_ok=True)
    weights = rc.state_dict_f32(module)
    rc.write_json(os.path.join(folder, "config.json"), {**config, "reference": note})
    save_file(weights, os.path.join(folder, "weights.safetensors"))
    save_file(rc.to_f32(io), os.path.join(folder, "io.safetensors"))
    n_params = sum(p.numel() for p in module.parameters())
    print(
        f"{name:18s} tensors {len(weights):3d} params {n_params:7d} "
        f"out std {io['out'].std().item():.3f} grad std {io['grad_x'].std().item():.3f} "
        f"size {rc.dir_size(folder) / 1e3:.0f} KB"
    )


def shift_mask(window, shift, h, w):
    """basicsr's own shifted-window mask, from a throwaway block."""
    blk = arch.SwinTransformerBlock(dim=4, input_resolution=(h, w), num_heads=1,
                                    window_size=window, shift_size=shift)
    return blk.attn_mask.clone()


def window_attention(g):
    dim, heads, window, h, w, b = 18, 3, 4, 8, 12, 2
    module = arch.WindowAttention(dim, window_size=(window, window), num_heads=heads)
    randomize(module, g)
    n = window * window
    n_windows = (h // window) * (w // window)
    x = rc.randn((b * n_windows, n, dim), g)
    cot = rc.randn((b * n_windows, n, dim), g)
    mask = shift_mask(window, window // 2, h, w)  # [nW, n, n], 0 / -100
    module.double()
    out, (gx,) = rc.vjp(lambda t: module(t, mask=mask.double()), [x.double()], cot.double())
    out_nm, (gx_nm,) = rc.vjp(lambda t: module(t), [x.double()], cot.double())
    config = dict(dim=dim, num_heads=heads, window_size=window, qkv_bias=True,
                  qk_scale=None, windows_from_image=[h, w], batch=b,
                  mask_note="mask is basicsr's shift mask for shift window/2 on the image above; "
                            "windows are batch-major then row-major, nW per image")
    io = dict(x=x, mask=mask, cotangent=cot, out=out, grad_x=gx, out_nomask=out_nm, grad_x_nomask=gx_nm)
    save("window_attention", module, config, io, "basicsr.archs.swinir_arch.WindowAttention")


def block(g, name, shift):
    dim, heads, window, res, b, mlp = 18, 3, 4, (8, 12), 2, 2.0
    module = arch.SwinTransformerBlock(dim=dim, input_resolution=res, num_heads=heads,
                                       window_size=window, shift_size=shift, mlp_ratio=mlp)
    randomize(module, g)
    x = rc.randn((b, res[0] * res[1], dim), g)
    cot = rc.randn((b, res[0] * res[1], dim), g)
    module.double()
    out, (gx,) = rc.vjp(lambda t: module(t, res), [x.double()], cot.double())
    config = dict(dim=dim, input_resolution=list(res), num_heads=heads, window_size=window,
                  shift_size=shift, mlp_ratio=mlp, qkv_bias=True, layer_norm_eps=1e-5,
                  gelu="exact (erf)", mask_value=-100.0)
    save(name, module, config, dict(x=x, cotangent=cot, out=out, grad_x=gx),
         "basicsr.archs.swinir_arch.SwinTransformerBlock")


def rstb(g):
    dim, heads, window, res, depth, b, mlp = 24, 3, 8, (16, 16), 2, 2, 2.0
    module = arch.RSTB(dim=dim, input_resolution=res, depth=depth, num_heads=heads,
                       window_size=window, mlp_ratio=mlp, img_size=res[0], patch_size=1,
                       resi_connection="1conv")
    randomize(module, g)
    x = rc.randn((b, res[0] * res[1], dim), g)
    cot = rc.randn((b, res[0] * res[1], dim), g)
    module.double()
    out, (gx,) = rc.vjp(lambda t: module(t, res), [x.double()], cot.double())
    config = dict(dim=dim, input_resolution=list(res), depth=depth, num_heads=heads,
                  window_size=window, shift_size_odd_blocks=window // 2, mlp_ratio=mlp,
                  resi_connection="1conv", patch_size=1, layer_norm_eps=1e-5)
    save("rstb", module, config, dict(x=x, cotangent=cot, out=out, grad_x=gx),
         "basicsr.archs.swinir_arch.RSTB")


def whole(g, name, upsampler, img, upscale):
    cfg = dict(img_size=img, patch_size=1, in_chans=3, embed_dim=12, depths=[2, 2],
               num_heads=[2, 3], window_size=4, mlp_ratio=2.0, upscale=upscale,
               img_range=1.0, upsampler=upsampler, resi_connection="1conv")
    module = arch.SwinIR(drop_path_rate=0.0, **cfg)
    module.eval()
    randomize(module, g)
    b = 2
    x = rc.uniform((b, 3, img, img), g, 0.0, 1.0)
    cot = rc.randn((b, 3, img * upscale, img * upscale), g)
    module.double()
    out, (gx,) = rc.vjp(module, [x.double()], cot.double())
    config = dict(cfg, image_mean=[0.4488, 0.4371, 0.4040], image_mean_dtype="float32 values",
                  num_feat=64, drop_path_rate=0.0, patch_norm=True, ape=False,
                  conv_before_upsample_leaky_slope=0.01, upsample_leaky_slope=0.2)
    save(name, module, config, dict(x=x, cotangent=cot, out=out, grad_x=gx),
         "basicsr.archs.swinir_arch.SwinIR")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT_DIR, exist_ok=True)
    window_attention(rc.generator(4000))
    block(rc.generator(4001), "block_shift", shift=2)
    block(rc.generator(4002), "block_noshift", shift=0)
    rstb(rc.generator(4003))
    whole(rc.generator(4004), "swinir_denoise", upsampler="", img=16, upscale=1)
    whole(rc.generator(4005), "swinir_nearest_conv", upsampler="nearest+conv", img=8, upscale=4)
    print(f"tests/fixtures/swinir total {rc.dir_size(OUT_DIR) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
