#!/usr/bin/env python3
"""Times PyTorch's CPU conv2d (3x3, stride 1, pad 1, batch 1, f32, no bias) at the shapes of
`dynface bench --device cpu`, forward and forward+input-gradient, with 2 threads.

Usage: python tools/reference/bench_torch_cpu_conv.py [--reps 11] [--warmup 3] [--threads 2]
Prints GFLOP/s per shape. The input-gradient figure times `torch.autograd.grad` of one
recorded convolution with respect to its input only (the weight does not require grad), so
it is the conv's input-gradient kernel, comparable with dynface's Conv2dBackwardInput.
"""
import argparse
import statistics
import time

import torch

SHAPES = [(64, 128), (128, 64), (256, 32), (512, 16)]


def median_seconds(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.reps} after {args.warmup} warm-up")
    print(f"{'shape':<12} {'fwd ms':>8} {'fwd GF/s':>9} {'bwd-in ms':>10} {'bwd-in GF/s':>12} "
          f"{'fwd+bwd-in GF/s':>16}")
    for ch, s in SHAPES:
        flops = 2.0 * ch * ch * 9 * s * s
        x = torch.randn(1, ch, s, s)
        w = torch.randn(ch, ch, 3, 3) * 0.05
        xg = x.clone().requires_grad_(True)
        dy = torch.randn(1, ch, s, s)
        y = torch.nn.functional.conv2d(xg, w, padding=1)

        def fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(x, w, padding=1)

        def bwd_in():
            (gx,) = torch.autograd.grad(y, xg, dy, retain_graph=True)
            return gx

        def fwd_bwd():
            yy = torch.nn.functional.conv2d(xg, w, padding=1)
            (gx,) = torch.autograd.grad(yy, xg, dy)
            return gx

        tf = median_seconds(fwd, args.warmup, args.reps)
        tb = median_seconds(bwd_in, args.warmup, args.reps)
        tfb = median_seconds(fwd_bwd, args.warmup, args.reps)
        label = f"{ch}ch {s}²"
        print(f"{label:<12} {tf * 1e3:8.2f} "
              f"{flops / tf / 1e9:9.1f} {tb * 1e3:10.2f} {flops / tb / 1e9:12.1f} "
              f"{2 * flops / tfb / 1e9:16.1f}")


if __name__ == "__main__":
    main()
