"""Speed of the fused exact convolution (sevc._exact.conv2d) against torch (not a test).

Per layer shape of the models, side by side, in ms (best of --repeats) and as ratios:
  f32    torch float32 F.conv2d with its bias (oneDNN), the float mode;
  ref    the portable mode written in torch: the input rounded onto its grid (exact.to_grid:
         abs, per-sample amax, frexp, scale, round, scale back), torch's float64 F.conv2d (im2col +
         MKL dgemm, or its grouped / depthwise kernels), then the bias added;
  fused  sevc._exact.conv2d(input, weight, bias, stride, padding, groups, 24, threads): the same
         in one call.
at each thread count. The inputs are not on any grid (normal values, magnitudes spread over six
decades across the channels), the weights are on theirs (exact.weight_grid), and every fused result
is checked against the torch path bit for bit.
Run:  python benchmarks/exact_conv.py [--threads 1,2] [--repeats 5] [--only dw] [--shrink 1]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from sevc import _exact
from sevc.numerics.exact import ACTIVATION_BITS, to_grid, weight_grid

# (input channels, output channels, kernel, stride, height, width, groups): representative layers.
SHAPES = [
    (48, 48, 3, 1, 240, 416, 1),
    (64, 64, 1, 1, 240, 416, 1),
    (128, 128, 3, 1, 60, 104, 1),
    (96, 96, 3, 2, 120, 208, 1),
    (64, 64, 2, 2, 240, 416, 1),
    (32, 64, 7, 1, 60, 104, 1),
    (256, 256, 1, 1, 60, 104, 1),
    (3, 128, 3, 2, 480, 832, 1),
    (48, 48, 3, 1, 240, 416, 48),      # depthwise (DepthConv)
    (96, 96, 3, 1, 120, 208, 96),      # depthwise
    (96, 48, 1, 1, 240, 416, 16),      # grouped 1x1 (OffsetDiversity fusion)
]


def best_ms(fn, repeats: int) -> float:
    fn()  # warm up (first-touch allocations, oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def layer_name(c, o, k, s, h, w, g) -> str:
    kind = " dw" if g == c == o and g > 1 else f" g{g}" if g > 1 else ""
    return f"{c:3d}->{o:3d} {k}x{k} s{s}{kind} at {h}x{w}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="run only layers whose name contains this ('dw', 'g16', '3x3')")
    parser.add_argument("--shrink", type=int, default=1, help="divide every layer's height and width by this")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]

    print(f"sevc._exact kernel: {_exact.isa()}, torch {torch.__version__}")
    gen = torch.Generator().manual_seed(0)
    cases = []
    for c, o, k, s, h, w, g in SHAPES:
        h, w = max(h // args.shrink, k), max(w // args.shrink, k)
        if args.only and args.only not in layer_name(c, o, k, s, h, w, g):
            continue
        spread = torch.logspace(-3, 3, c, dtype=torch.float64)[torch.randperm(c, generator=gen)]
        x = torch.randn(1, c, h, w, generator=gen, dtype=torch.float64) * spread.view(1, -1, 1, 1)
        wt = weight_grid(torch.randn(o, c // g, k, k, generator=gen) * (c // g * k * k) ** -0.5)
        bias = torch.randn(o, generator=gen, dtype=torch.float64)
        cases.append(((c, o, k, s, h, w, g), x, wt, bias))

    for threads in thread_counts:
        torch.set_num_threads(threads)
        print(f"\n{threads} thread{'s' if threads > 1 else ''}")
        print(f"{'layer':31s} {'f32 ms':>8s} {'ref ms':>8s} {'fused ms':>9s}   {'ref/f32':>7s} {'fused/f32':>9s}"
              f" {'ref/fused':>9s}  bits")
        for (c, o, k, s, h, w, g), x, wt, bias in cases:
            p = k // 2
            x32, w32, b32 = x.float(), wt.float(), bias.float()
            xn, wn, bn = x.numpy(), wt.numpy(), bias.numpy()

            def reference():
                xq = to_grid(x, ACTIVATION_BITS, (1, 2, 3))
                return F.conv2d(xq, wt, None, s, p, 1, g) + bias.view(1, -1, 1, 1)

            def fused():
                return _exact.conv2d(xn, wn, bn, s, p, g, ACTIVATION_BITS, threads)

            f32 = best_ms(lambda: F.conv2d(x32, w32, b32, s, p, 1, g), args.repeats)
            ref = best_ms(reference, args.repeats)
            ours = best_ms(fused, args.repeats)
            expected, got = reference(), torch.from_numpy(fused())
            same = torch.equal(got.view(torch.int64), expected.view(torch.int64))
            print(f"{layer_name(c, o, k, s, h, w, g):31s} {f32:8.1f} {ref:8.1f} {ours:9.1f}   {ref / f32:7.2f}"
                  f" {ours / f32:9.2f} {ref / ours:9.2f}  {'equal' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
