"""PyTorch CPU timings of the whole networks `dynface bench --device cpu --net` times.

The same network, batch, size and thread count as the Rust bench, random weights:
  unet    DifFace's FFHQ 512 prior (difface_unet.py: guided-diffusion-sdk's blocks)
  swinir  DifFace's restorer: basicsr 1.4.2's SwinIR (basicsr_swinir.py) with DifFace's
          front and tail (pixel-unshuffle x8 into conv_first.1 192->180, nearest+conv
          upsampling x8 with conv_up1..3), embed 180, 8 stages x 6 blocks, window 8
Timed after warm-up, median of --iters wall-clock runs:
  fwd       out = net(x)                      (torch.no_grad)
  fwd+grad  out = net(x); d sum(out * cot)/dx  (weights frozen: input gradient only)
CPU-seconds per wall second over the timed runs come from time.process_time().

With --compare OURS.json (written by `dynface bench --device cpu --net ... --json`), it
checks that both sides ran the same case and prints both medians and the ratio
(PyTorch ms / dynface ms: above 1 means dynface is faster).

  ./target/release/dynface bench --device cpu --net unet --grad --iters 3 --json /tmp/ours.json
  /work/venv/bin/python tools/reference/bench_torch_cpu_net.py --net unet --grad --iters 3 \\
      --compare /tmp/ours.json
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


def randomize(model):
    """Weights N(0, 1/fan_in), vectors N(0, 0.01^2), norms at 1 and 0. The Rust bench draws
    its own values: speed does not depend on them (only denormals would, and none arise)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5)
            elif "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.normal_(0.0, 0.01)
    model.requires_grad_(False)
    return model.eval()


def build_unet():
    import difface_unet

    return randomize(difface_unet.DifFaceUNet(**difface_unet.FFHQ512)), 3


class DifFaceSwinIR(nn.Module):
    """basicsr's SwinIR body between DifFace's unshuffle front and x8 nearest+conv tail."""

    def __init__(self, size):
        super().__init__()
        arch = __import__("basicsr_swinir").load()
        self.up = 8
        self.body = arch.SwinIR(img_size=size // self.up, patch_size=1, in_chans=3, embed_dim=180,
                                depths=[6] * 8, num_heads=[6] * 8, window_size=8, mlp_ratio=2.0,
                                upscale=4, img_range=1.0, upsampler="nearest+conv",
                                resi_connection="1conv", drop_path_rate=0.0)
        b = self.body
        b.conv_first = nn.Sequential(nn.PixelUnshuffle(self.up), nn.Conv2d(3 * self.up**2, 180, 3, 1, 1))
        b.conv_up3 = nn.Conv2d(64, 64, 3, 1, 1)

    def forward(self, x):
        b = self.body
        mean = b.mean.type_as(x)
        x = (x - mean) * b.img_range
        x = b.conv_first(x)
        x = b.conv_after_body(b.forward_features(x)) + x
        x = b.conv_before_upsample(x)
        for conv in (b.conv_up1, b.conv_up2, b.conv_up3):
            x = b.lrelu(conv(F.interpolate(x, scale_factor=2, mode="nearest")))
        x = b.conv_last(b.lrelu(b.conv_hr(x)))
        return x / b.img_range + mean


def build_swinir(size):
    return randomize(DifFaceSwinIR(size)), 3


def run(args):
    torch.manual_seed(0)
    if args.net == "unet":
        model, out_ch = build_unet()
        t = torch.tensor([(700 + 17 * i) % 1000 for i in range(args.batch)], dtype=torch.float32)
        x = torch.randn(args.batch, 3, args.size, args.size)
        net = lambda inp: model(inp, t)  # noqa: E731
    else:
        model, out_ch = build_swinir(args.size)
        x = torch.rand(args.batch, 3, args.size, args.size)
        net = model
    with torch.no_grad():
        out_shape = net(x).shape
    cot = torch.randn(out_shape)

    def fwd():
        with torch.no_grad():
            net(x)

    def fwd_grad():
        xg = x.detach().requires_grad_(True)
        (net(xg) * cot).sum().backward()
        return xg.grad

    fn = fwd_grad if args.grad else fwd
    for _ in range(args.warmup):
        fn()
    times = []
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(args.iters):
        s = time.perf_counter()
        fn()
        times.append((time.perf_counter() - s) * 1e3)
        print(f"  run {i + 1}: {times[-1]:.1f} ms", flush=True)
    cpu_s = time.process_time() - c0
    cpu_per_wall = cpu_s / (time.perf_counter() - w0)
    return dict(net=args.net, batch=args.batch, size=args.size, with_grad=args.grad,
                threads=torch.get_num_threads(), warmup=args.warmup, iters=args.iters,
                times_ms=times, median_ms=statistics.median(times), min_ms=min(times),
                cpu_per_wall=cpu_per_wall, cpu_s_per_run=cpu_s / args.iters, torch=torch.__version__,
                parameters=sum(p.numel() for p in model.parameters()))


def compare(torch_row, path):
    with open(path) as f:
        ours = json.load(f)
    ours = ours.get("net") or {}
    for k in ("net", "batch", "size", "with_grad", "threads", "parameters"):
        if ours.get(k) != torch_row[k]:
            sys.exit(f"{path}: {k} = {ours.get(k)!r}, but PyTorch ran {torch_row[k]!r}: not the same case")
    mode = "fwd+grad" if torch_row["with_grad"] else "fwd"
    cpu = ours.get("cpu_per_wall")
    print(f"{torch_row['net']} {mode}, batch {torch_row['batch']}, {torch_row['size']}², "
          f"{torch_row['threads']} threads:")
    ocpu = ours.get("cpu_s_per_run")
    print(f"  pytorch {torch_row['torch']:<14} median {torch_row['median_ms']:10.1f} ms  "
          f"{torch_row['cpu_per_wall']:.2f} CPU-s/wall-s  {torch_row['cpu_s_per_run']:.2f} CPU-s/run")
    print(f"  dynface {'':<14} median {ours['median_ms']:10.1f} ms  "
          f"{'n/a' if cpu is None else format(cpu, '.2f')} CPU-s/wall-s  "
          f"{'n/a' if ocpu is None else format(ocpu, '.2f')} CPU-s/run")
    ratio = torch_row["median_ms"] / ours["median_ms"]
    print(f"  ratio (pytorch ms / dynface ms): {ratio:.2f}x")
    if ocpu:
        print(f"  ratio of CPU-s per run (pytorch / dynface, load-robust): "
              f"{torch_row['cpu_s_per_run'] / ocpu:.2f}x")
    return ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", choices=["unet", "swinir"], required=True)
    ap.add_argument("--grad", action="store_true", help="forward + input gradient")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--compare", help="dynface bench --json output to compare with")
    ap.add_argument("--json", help="write this side's figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"pytorch {torch.__version__} cpu, {args.net} {'fwd+grad' if args.grad else 'fwd'}, "
          f"batch {args.batch}, {args.size}², {torch.get_num_threads()} threads", flush=True)
    row = run(args)
    print(f"{args.net}: median {row['median_ms']:.1f} ms of {args.iters} (min {row['min_ms']:.1f}), "
          f"{row['cpu_per_wall']:.2f} CPU-s per wall-s, {row['cpu_s_per_run']:.2f} CPU-s per run")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)
    if args.compare:
        row["ratio"] = compare(row, args.compare)


if __name__ == "__main__":
    main()
