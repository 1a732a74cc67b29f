"""The portable functions (not a test): the torch definitions against sevc._exact's CPU kernels,
side by side, with 1 and 2 threads (both sides), best of several runs. Run:
  python benchmarks/portable_math.py [--repeat 5] [--threads 1 2] [--kernel auto|generic] [--shrink 1]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, Tuple

import torch

from sevc import _exact
from sevc.numerics import exact, functions

F64 = torch.float64


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cases(kernel: str, shrink: int = 1) -> Dict[str, Tuple[str, torch.Tensor, Callable, Callable]]:
    """name -> (input description, input, torch definition, C++ kernel of (x, threads)); `shrink`
    divides the inputs' leading sizes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn((1 << 20) // shrink, dtype=F64, generator=g) * 3
    scores = torch.randn(max(32 // shrink, 1), 256, 256, dtype=F64, generator=g) * 4   # attention windows
    tokens = torch.randn(16384 // shrink, 96, dtype=F64, generator=g)
    features = torch.randn(max(8 // shrink, 1), 96, 64, 64, dtype=F64, generator=g)

    def elementwise(name):
        kernel_fn = getattr(_exact, name)
        return (f"{x.numel()} x N(0, 9)", x, getattr(functions, f"_{name}_torch"),
                lambda t, threads: kernel_fn(t.numpy(), threads=threads, kernel=kernel))

    def shape(t: torch.Tensor) -> str:
        return str(list(t.shape))

    table = {name: elementwise(name) for name in ("exp", "sigmoid", "tanh", "softplus", "normal_cdf", "gelu")}
    table["softmax"] = (shape(scores), scores, exact._softmax_torch,
                        lambda t, threads: _exact.softmax(t.numpy(), threads=threads, kernel=kernel))
    table["layer_norm stats"] = (shape(tokens), tokens, exact._layer_norm_statistics_torch,
                                 lambda t, threads: _exact.layer_norm_statistics(t.numpy(), threads=threads, kernel=kernel))
    table["to_grid"] = (shape(features) + ", per sample", features, lambda t: exact._to_grid_torch(t, 24, (1, 2, 3)),
                        lambda t, threads: _exact.to_grid(t.numpy(), 24, 3, threads=threads, kernel=kernel))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kernel", default="auto", choices=["auto", "avx2", "generic"])
    parser.add_argument("--shrink", type=int, default=1, help="divide the inputs' sizes by this")
    args = parser.parse_args()
    kernel = args.kernel if args.kernel != "auto" else _exact.portable_isa()
    print(f"kernels: {kernel}; times in ms, best of {args.repeat}")
    header = f"{'function':18s} {'input':28s}" + "".join(
        f" | {'torch':>8s} {'C++':>7s} {'ratio':>6s} ({t} thr)" for t in args.threads)
    print(header)
    print("-" * len(header))
    for name, (description, x, definition, ours) in cases(args.kernel, args.shrink).items():
        row = f"{name:18s} {description:28s}"
        for threads in args.threads:
            torch.set_num_threads(threads)
            reference_s = best_of(args.repeat, lambda: definition(x))
            ours_s = best_of(args.repeat, lambda: ours(x, threads))
            row += f" | {reference_s * 1e3:8.1f} {ours_s * 1e3:7.2f} {reference_s / ours_s:5.0f}x        "
        print(row.rstrip())


if __name__ == "__main__":
    main()
