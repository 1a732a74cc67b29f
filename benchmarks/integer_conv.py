"""Speed of integer numerics' convolution kernels (sevc._exact.integer_conv2d) against torch's
float32 convolution (not a test).

Per layer shape of the models (exact_conv.py's), in ms (best of --repeats) and as ratios to
float32: every integer kernel this CPU runs (amx, avx512, avx2, generic; --kernels picks), each
result checked against the definition (sevc.numerics.integer.reference_conv2d) bit for bit.
Run:  python benchmarks/integer_conv.py [--threads 1 2] [--repeats 5] [--kernels amx avx512] [--shrink 1]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from exact_conv import SHAPES, best_ms, layer_name  # this folder's float64 convolution benchmark

from sevc import _exact
from sevc.numerics import integer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels", nargs="+", default=_exact.integer_isas()[::-1], choices=_exact.integer_isas())
    parser.add_argument("--shrink", type=int, default=1, help="divide every layer's height and width by this")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    print(f"integer kernels of this CPU: {', '.join(_exact.integer_isas())}; torch {torch.__version__}; "
          f"ms (ratio to float32)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n{threads} thread{'s' if threads > 1 else ''}")
        print(f"{'layer':31s} {'f32':>8s}" + "".join(f" {name:>15s}" for name in args.kernels) + "  bits")
        for c, o, k, s, h, w, g in SHAPES:
            h, w = max(h // args.shrink, k), max(w // args.shrink, k)
            x = torch.randn(1, c, h, w, generator=gen)
            weight = torch.randn(o, c // g, k, k, generator=gen) / (c // g * k * k) ** 0.5
            bias = torch.randn(o, generator=gen)
            q = integer.cached_integer_weight(weight)
            xn, bn = x.numpy(), bias.double().numpy()
            expected = integer.reference_conv2d(x, weight, bias, s, k // 2, g)
            f32 = best_ms(lambda: F.conv2d(x, weight, bias, s, k // 2, 1, g), args.repeats)
            row, same = f"{layer_name(c, o, k, s, h, w, g):31s} {f32:8.2f}", True
            for name in args.kernels:
                packed = _exact.IntegerWeight(q.q.numpy(), q.exponents.numpy(), g, name)

                def run():
                    return _exact.integer_conv2d(xn, packed, bn, s, k // 2, threads)
                ms = best_ms(run, args.repeats)
                same &= torch.equal(torch.from_numpy(run()), expected)
                row += f" {ms:8.2f} ({ms / f32:4.2f})"
            print(row + ("  equal" if same else "  DIFFER"))


if __name__ == "__main__":
    main()
