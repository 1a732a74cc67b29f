"""Throughput of the sevc rANS coder (not a test): encode and decode Msymbols/s.

Symbols are drawn like the reference rANS fixture: a table index uniform over the 256
Laplace scale tables, a Laplace value of that scale, and 1% outliers far outside the
tables (coded through the escape path). Run:  python benchmarks/rans_throughput.py
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sevc import _rans
from sevc.entropy.scale_table import SCALE_LEVELS, ScaleTableModel


def draw_symbols(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    model = ScaleTableModel("laplace")
    indexes = rng.integers(0, SCALE_LEVELS, size=count).astype(np.int32)
    scales = model.scale_table.numpy()[indexes]
    symbols = np.round(rng.laplace(0.0, scales)).astype(np.int64)
    outliers = rng.random(count) < 0.01
    symbols[outliers] = rng.integers(-3000, 3000, size=int(outliers.sum()))
    return symbols.astype(np.int16), indexes


def best_of(repeats: int, fn):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = ScaleTableModel("laplace")
    model.update()
    tables = model.tables()
    symbols, indexes = draw_symbols(args.symbols)
    mega = args.symbols / 1e6
    print(f"{args.symbols:,} symbols, Laplace tables, 1% escapes, torch threads {torch.get_num_threads()}")
    print(f"{'parts':>5} {'encode Msym/s':>14} {'decode Msym/s':>14} {'bits/symbol':>12}")
    for parts in (1, 2):
        encoder = _rans.RansEncoder(parts, False)  # reused across frames, as a codec does

        def encode():
            encoder.reset()
            encoder.encode(symbols, indexes, tables)
            encoder.flush()
            return encoder.get_encoded_stream()

        enc_time, stream = best_of(args.repeats, encode)

        def decode():
            decoder = _rans.RansDecoder()
            decoder.set_stream(stream)
            return decoder.decode(indexes, tables)

        dec_time, decoded = best_of(args.repeats, decode)
        if not np.array_equal(decoded, symbols):
            raise SystemExit("round trip failed")
        print(f"{parts:>5} {mega / enc_time:>14.1f} {mega / dec_time:>14.1f} {8 * len(stream) / args.symbols:>12.3f}")


if __name__ == "__main__":
    main()
