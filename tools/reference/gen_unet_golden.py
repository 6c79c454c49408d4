"""Golden fixtures for the guided-diffusion ("ADM") UNet, from third-party code.

Reference: `guided_diffusion.unet.UNetModel` of the PyPI package
guided-diffusion-sdk, and, for per-level num_res_blocks, difface_unet.py (the
DifFace wiring over the same SDK blocks).

For every config it writes tests/fixtures/unet/<name>/:
  config.json        UNet arguments as the Rust side reads them; attention
                     resolutions are FEATURE SIZES IN PIXELS (DifFace's
                     convention), not the SDK's downsample ratios.
  weights.safetensors  the state dict, f32, official key names, no prefix.
  io.safetensors     x [B,C,H,W], t [B] (integer values as f32), cotangent,
                     out = model(x, t), grad_x = d<out, cotangent>/dx, plus the
                     intermediates temb (sinusoidal embedding, [B,model_channels])
                     and emb (after the time MLP, [B,4*model_channels]).
Weights and inputs are drawn in f32, the model runs in float64, results are
stored rounded to f32. GroupNorm needs 32 groups, so 32 channels is the
narrowest legal width; that floors a fixture at about 1.8 MB.

It also writes tests/fixtures/unet/ffhq512_keys.json: key names, shapes,
tensor and parameter counts of the FULL DifFace FFHQ 512 prior (built on the
meta device, no memory).

Run: /work/venv/bin/python tools/reference/gen_unet_golden.py
"""

import os
import sys
import warnings

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", category=FutureWarning)

import difface_unet  # noqa: E402
import refcommon as rc  # noqa: E402
from guided_diffusion.nn import timestep_embedding  # noqa: E402
from guided_diffusion.unet import UNetModel  # noqa: E402

OUT_DIR = os.path.join(rc.FIXTURES, "unet")
BATCH = 2

# SDK configs: attention given here in pixels, converted to ratios for the SDK.
SDK_CONFIGS = {
    # learned sigma, scale-shift norm, legacy order, num_heads (2 heads of 16)
    "sdk_legacy_heads_ss": dict(
        image_size=16,
        in_channels=3,
        model_channels=32,
        out_channels=6,
        num_res_blocks=1,
        attention_resolutions=[8, 4],
        channel_mult=[1, 1, 1],
        num_heads=2,
        num_head_channels=-1,
        use_scale_shift_norm=True,
        resblock_updown=False,
        use_new_attention_order=False,
    ),
    # new attention order by num_head_channels (4 heads of 8), resblock up/down,
    # plain additive time embedding (no scale-shift), attention at full resolution
    "sdk_new_headch_updown": dict(
        image_size=16,
        in_channels=3,
        model_channels=32,
        out_channels=3,
        num_res_blocks=1,
        attention_resolutions=[16, 8],
        channel_mult=[1, 1, 1],
        num_heads=1,
        num_head_channels=8,
        use_scale_shift_norm=False,
        resblock_updown=True,
        use_new_attention_order=True,
    ),
    # 32 px, new order by num_heads (4 heads of 8), scale-shift, learned sigma.
    # Same parameter shapes as sdk_legacy_heads_ss (heads, order and the
    # attention's level carry no parameters), so it reuses that folder's
    # weights file to keep the fixtures small.
    "sdk_new_heads_ss_32px": dict(
        weights_from="sdk_legacy_heads_ss",
        image_size=32,
        in_channels=3,
        model_channels=32,
        out_channels=6,
        num_res_blocks=1,
        attention_resolutions=[16, 8],
        channel_mult=[1, 1, 1],
        num_heads=4,
        num_head_channels=-1,
        use_scale_shift_norm=True,
        resblock_updown=False,
        use_new_attention_order=True,
    ),
}

# Per-level res-block counts through difface_unet.py, FFHQ-512-like options.
DIFFACE_CONFIGS = {
    "difface_perlevel": dict(
        image_size=16,
        in_channels=3,
        model_channels=32,
        out_channels=6,
        num_res_blocks=[1, 2, 1],
        attention_resolutions=[8, 4],
        channel_mult=[1, 1, 1],
        num_heads=1,
        num_head_channels=16,
        use_scale_shift_norm=True,
        resblock_updown=False,
        use_new_attention_order=False,
    ),
}


def sdk_model(cfg):
    cfg = {k: v for k, v in cfg.items() if k != "weights_from"}
    ratios = tuple(cfg["image_size"] // px for px in cfg["attention_resolutions"])
    return UNetModel(
        image_size=cfg["image_size"],
        in_channels=cfg["in_channels"],
        model_channels=cfg["model_channels"],
        out_channels=cfg["out_channels"],
        num_res_blocks=cfg["num_res_blocks"],
        attention_resolutions=ratios,
        dropout=0.0,
        channel_mult=tuple(cfg["channel_mult"]),
        num_heads=cfg["num_heads"],
        num_head_channels=cfg["num_head_channels"],
        use_scale_shift_norm=cfg["use_scale_shift_norm"],
        resblock_updown=cfg["resblock_updown"],
        use_new_attention_order=cfg["use_new_attention_order"],
    )


def difface_model(cfg):
    return difface_unet.DifFaceUNet(dropout=0.0, **cfg)


def config_json(cfg, reference, num_heads_upsample, weights_file):
    out = {k: v for k, v in cfg.items() if k != "weights_from"}
    out["dropout"] = 0.0
    out["learn_sigma"] = cfg["out_channels"] == 2 * cfg["in_channels"]
    out["num_heads_upsample"] = num_heads_upsample
    out["conv_resample"] = True
    out["attention_resolutions_convention"] = "feature size in pixels"
    out["reference"] = reference
    out["weights_file"] = weights_file  # relative to the config's folder
    return out


def run_golden(name, model, cfg, seed, reference, num_heads_upsample, shared=None):
    """`shared`: (folder name, state dict) of a config whose weights this one reuses."""
    g = rc.generator(seed)
    model.eval()
    if shared is None:
        rc.randomize_(model, g)
        weights_file = "weights.safetensors"
    else:
        model.load_state_dict(shared[1])
        weights_file = f"../{shared[0]}/weights.safetensors"
    weights = rc.state_dict_f32(model)

    b, c, s = BATCH, cfg["in_channels"], cfg["image_size"]
    x = rc.uniform((b, c, s, s), g, -1.0, 1.0)
    t = torch.randint(0, 1000, (b,), generator=g).to(torch.float32)
    cot = rc.randn((b, cfg["out_channels"], s, s), g)

    # What plain f32 torch gets wrong against the fp64 reference: a yardstick
    # for the tolerance a f32 engine can be held to.
    out32, (grad32,) = rc.vjp(lambda xx: model(xx, t), [x], cot)

    model.double()
    if hasattr(model, "dtype"):
        model.dtype = torch.float64  # the SDK casts its input to self.dtype
    with rc.float64_everywhere():
        t64 = t.double()
        out, (grad_x,) = rc.vjp(lambda xx: model(xx, t64), [x.double()], cot.double())
        temb = timestep_embedding(t64, cfg["model_channels"])
        emb = model.time_embed(temb).detach()

    err = {
        "torch_f32_max_abs_err_out": (out32.double() - out).abs().max().item(),
        "torch_f32_max_abs_err_grad_x": (grad32.double() - grad_x).abs().max().item(),
    }
    folder = os.path.join(OUT_DIR, name)
    os.makedirs(folder, exist_ok=True)
    rc.write_json(
        os.path.join(folder, "config.json"),
        {**config_json(cfg, reference, num_heads_upsample, weights_file), **err},
    )
    if shared is None:
        save_file(weights, os.path.join(folder, "weights.safetensors"))
    io = rc.to_f32(dict(x=x, t=t, cotangent=cot, out=out, grad_x=grad_x, temb=temb, emb=emb))
    save_file(io, os.path.join(folder, "io.safetensors"))

    n_params = sum(v.numel() for v in weights.values())
    print(
        f"{name:24s} tensors {len(weights):4d} params {n_params:8d} t={t.tolist()} "
        f"out std {out.std().item():.3f} grad_x std {grad_x.std().item():.3f} "
        f"f32 err {err['torch_f32_max_abs_err_out']:.1e}/{err['torch_f32_max_abs_err_grad_x']:.1e} "
        f"size {rc.dir_size(folder) / 1e6:.2f} MB"
    )
    return weights


def check_wiring_matches_sdk():
    """difface_unet.py with an int num_res_blocks must be the SDK's UNetModel:
    same keys and shapes, same output on shared weights (fp64)."""
    cfg = dict(SDK_CONFIGS["sdk_legacy_heads_ss"])
    sdk = sdk_model(cfg)
    mine = difface_unet.DifFaceUNet(num_heads_upsample=cfg["num_heads"], **cfg)
    rc.randomize_(sdk, rc.generator(7))
    ks = {k: tuple(v.shape) for k, v in sdk.state_dict().items()}
    km = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
    assert ks == km, "difface_unet keys differ from the SDK's"
    mine.load_state_dict(sdk.state_dict())
    sdk.double()
    sdk.dtype = torch.float64
    mine.double()
    g = rc.generator(8)
    x = rc.uniform((2, 3, 16, 16), g, -1, 1).double()
    t = torch.tensor([3.0, 871.0], dtype=torch.float64)
    with torch.no_grad(), rc.float64_everywhere():
        diff = (sdk(x, t) - mine(x, t)).abs().max().item()
    assert diff == 0.0, f"difface_unet differs from the SDK by {diff}"
    print(f"difface_unet.py == SDK UNetModel for an int num_res_blocks (max diff {diff})")


def ffhq512_keys():
    model = difface_unet.build_ffhq512("meta")
    sd = model.state_dict()
    keys = [{"key": k, "shape": list(v.shape)} for k, v in sd.items()]
    n_params = sum(v.numel() for v in sd.values())
    summary = {
        "config": difface_unet.FFHQ512,
        "tensor_count": len(sd),
        "parameter_count": n_params,
        "checkpoint_key_prefix": "module.",
        "keys": keys,
    }
    rc.write_json(os.path.join(OUT_DIR, "ffhq512_keys.json"), summary)
    print(f"FFHQ 512 (DifFace): {len(sd)} tensors, {n_params:,} parameters")
    assert len(sd) == 630 and n_params == 159_788_454, "FFHQ 512 counts differ from METHOD.md §4"


def main():
    torch.manual_seed(0)
    os.makedirs(OUT_DIR, exist_ok=True)
    check_wiring_matches_sdk()
    written = {}
    for i, (name, cfg) in enumerate(SDK_CONFIGS.items()):
        heads_up = cfg["num_heads"]  # the SDK's num_heads_upsample=-1 means num_heads
        src = cfg.get("weights_from")
        shared = (src, written[src]) if src else None
        written[name] = run_golden(
            name, sdk_model(cfg), cfg, 1000 + i, "guided_diffusion.unet.UNetModel", heads_up, shared
        )
    for i, (name, cfg) in enumerate(DIFFACE_CONFIGS.items()):
        run_golden(name, difface_model(cfg), cfg, 2000 + i, "tools/reference/difface_unet.py", 1)
    ffhq512_keys()
    print(f"tests/fixtures/unet total {rc.dir_size(OUT_DIR) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
