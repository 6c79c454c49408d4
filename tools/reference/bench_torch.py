"""PyTorch timings of the DifFace FFHQ 512 UNet, the baseline for the Rust engine.

Builds the full prior (difface_unet.py: 630 tensors, 159.8 M parameters) with
random weights and times, after warm-up, with CUDA events (wall clock on CPU):
  fwd       out = model(x, t)
  fwd+grad  out = model(x, t); d sum(out * cotangent) / dx   (the DPS step: the
            parameters are frozen, so only input gradients are computed)
for batch 1 and 8, fp32 and bf16 autocast (and channels_last with
--channels-last). Also a roofline: device-to-device copy bandwidth and fp32 /
bf16 matmul throughput.

TF32 is OFF by default (fp32 convs and matmuls are true fp32); --tf32 turns it
on for both cuDNN convs and cuBLAS matmuls.

Needs only torch and numpy plus guided-diffusion's source: set
GUIDED_DIFFUSION_SRC to a copy of the `guided_diffusion` package's parent
folder where the SDK is not pip-installed (README.md: stage_gd_src.sh).

Examples:
  python tools/reference/bench_torch.py --out bench.json            # GPU, full
  python tools/reference/bench_torch.py --tf32 --out bench_tf32.json
  python tools/reference/bench_torch.py --device cpu --quick         # smoke test
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", category=FutureWarning)

import difface_unet  # noqa: E402


def set_tf32(enabled):
    """Both the post-2.9 precision API and the legacy flags exist in the wild;
    mixing them raises in some versions, so use the new one when present."""
    mode = "tf32" if enabled else "ieee"
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        matmul.fp32_precision = mode
        conv.fp32_precision = mode
        return {"api": "fp32_precision", "matmul": matmul.fp32_precision, "conv": conv.fp32_precision}
    matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return {"api": "allow_tf32", "matmul": matmul.allow_tf32, "conv": torch.backends.cudnn.allow_tf32}


class Timer:
    """Mean milliseconds per call of fn over `reps` calls, after `warmup` calls."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, fn, warmup, reps):
        for _ in range(warmup):
            fn()
        self.sync()
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) * 1e3 / reps


def count_macs(model, x, t):
    """Multiply-accumulates of one forward: convolutions, linears and the two
    attention matmuls, counted with forward hooks."""
    gd = difface_unet.gd_unet
    total = [0]

    def conv_hook(m, inp, out):
        k = m.weight[0].numel()  # in_channels/groups * kernel
        total[0] += out.numel() * k

    def linear_hook(m, inp, out):
        total[0] += out.numel() * m.in_features

    def attn_hook(m, inp, out):
        b, width, length = inp[0].shape
        total[0] += 2 * b * (width // 3) * length * length  # QK^T and AV

    hooks = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, (gd.QKVAttentionLegacy, gd.QKVAttention)):
            hooks.append(m.register_forward_hook(attn_hook))
    with torch.no_grad():
        model(x, t)
    for h in hooks:
        h.remove()
    return total[0]


def roofline(device, timer, quick):
    res = {}
    n_bytes = (64 << 20) if quick else (2 << 30)
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src), 3, 5 if quick else 20)
    res["copy_bytes"] = n_bytes
    res["copy_GBps"] = 2 * n_bytes / (ms * 1e-3) / 1e9  # read + write
    del src, dst
    n = 512 if quick else 8192
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        ms = timer(lambda: a @ b, 2, 3 if quick else 10)
        res[f"matmul_{name}_n"] = n
        res[f"matmul_{name}_TFLOPs"] = 2 * n**3 / (ms * 1e-3) / 1e12
    return res


def bench_unet(args, device, timer):
    torch.manual_seed(0)
    cfg = dict(difface_unet.FFHQ512)
    size = args.image or (64 if args.quick else cfg["image_size"])
    model = difface_unet.DifFaceUNet(**cfg)
    with torch.no_grad():  # random weights, zero-initialised layers included
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5)
            else:
                p.normal_(1.0 if p.ndim == 1 else 0.0, 0.1)
    model.requires_grad_(False)
    model.eval().to(device)
    n_params = sum(p.numel() for p in model.parameters())

    batches = args.batches or ([1] if args.quick else [1, 8])
    layouts = ["contiguous"] + (["channels_last"] if args.channels_last else [])
    rows = []
    for layout in layouts:
        if layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        for batch in batches:
            x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
            t = torch.randint(0, 1000, (batch,), device=device).float()
            cot = torch.randn(batch, 6, size, size, device=device)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            macs = count_macs(model, x, t)
            print(f"# batch {batch}, {size} px: {macs / 1e9:.2f} GMAC per forward", flush=True)
            for precision in args.precisions:
                amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

                def fwd():
                    with torch.no_grad(), amp:
                        model(x, t)

                def fwd_grad():
                    xg = x.detach().requires_grad_(True)
                    with amp:
                        out = model(xg, t)
                    (out.float() * cot).sum().backward()
                    return xg.grad

                for mode, fn in (("fwd", fwd), ("fwd+grad", fwd_grad)):
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    ms = timer(fn, args.warmup, args.reps)
                    row = dict(layout=layout, batch=batch, precision=precision, mode=mode,
                               image=size, ms=ms, ms_per_image=ms / batch, gmac_fwd=macs / 1e9)
                    # Parameters are frozen, so the backward pass computes input
                    # gradients only: about one forward's worth of MACs again.
                    flop = 2 * macs * (1 if mode == "fwd" else 2)
                    row["TFLOPs_effective"] = flop / (ms * 1e-3) / 1e12
                    if device.type == "cuda":
                        row["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30
                    rows.append(row)
                    print_row(row)
    return n_params, rows


def print_row(r):
    mem = f"{r['peak_mem_GiB']:6.1f}" if "peak_mem_GiB" in r else "     -"
    print(f"{r['layout']:13s} {r['batch']:5d} {r['precision']:9s} {r['mode']:9s} "
          f"{r['ms']:10.2f} {r['ms_per_image']:10.2f} {r['TFLOPs_effective']:8.2f} {mem}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="64 px, batch 1, tiny roofline (smoke test)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in fp32 convs and matmuls")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="let cuDNN autotune its conv algorithms (torch.backends.cudnn.benchmark)")
    ap.add_argument("--channels-last", action="store_true", help="also time channels_last")
    ap.add_argument("--image", type=int, default=0, help="image size (default 512, --quick 64)")
    ap.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 8, --quick 1)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--no-roofline", action="store_true")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.warmup, args.reps = min(args.warmup, 1), min(args.reps, 2)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    tf32 = set_tf32(args.tf32)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    timer = Timer(device)
    info = dict(torch=torch.__version__, device=str(device), python=platform.python_version(),
                tf32=tf32, cudnn_benchmark=args.cudnn_benchmark, quick=args.quick, warmup=args.warmup, reps=args.reps,
                cpu_threads=torch.get_num_threads(), guided_diffusion=difface_unet.gd_unet.__file__)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    print(json.dumps(info))

    roof = {} if args.no_roofline else roofline(device, timer, args.quick)
    if roof:
        print(f"copy {roof['copy_GBps']:.1f} GB/s (read+write of {roof['copy_bytes'] >> 20} MiB), "
              f"matmul {roof['matmul_fp32_n']}^3 fp32 {roof['matmul_fp32_TFLOPs']:.2f} TFLOP/s, "
              f"bf16 {roof['matmul_bf16_TFLOPs']:.2f} TFLOP/s")
    print(f"{'layout':13s} {'batch':>5s} {'precision':9s} {'mode':9s} {'ms':>10s} {'ms/image':>10s} "
          f"{'TFLOP/s':>8s} {'GiB':>6s}")
    n_params, rows = bench_unet(args, device, timer)
    info["flop_model"] = "fwd 2*MACs; fwd+grad 2*2*MACs (input gradients only)"
    result = dict(info=info, parameters=n_params, roofline=roof, unet=rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
