"""Portable against float numerics (not a test): encode and decode time per frame, side by side,
at each frame size and thread count.

Uses the official checkpoints if they are in ckpt/, else stand-in weights (speed does not depend
on the weights' values). Frames are the bundled clip, tiled to the size. Run:
  python benchmarks/numerics_speed.py [--sizes 416x240 832x480] [--frames 3] [--threads 1 2] [--cuda]
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, List

import torch
from codec_speed import clip, timed  # this folder's codec benchmark

from sevc.cli.common import usable_cores
from sevc.codec.video import VideoCodec
from sevc.models import Rate
from sevc.models.loading import I_FRAME_CKPT, P_FRAME_CKPT, default_checkpoint, load_models
from sevc.models.stand_in import stand_in_models
from sevc.numerics import Numerics


def measure(models, frames: List[torch.Tensor], mode: Numerics, device: torch.device) -> Dict[str, float]:
    """ms per frame of encoding and decoding `frames` in `mode`."""
    codec = VideoCodec(*models, numerics=mode)
    rate = Rate.level(32)
    height, width = frames[0].shape[2:]
    coded: list = []
    encode = timed(device, codec.encode(frames, rate=rate), coded)
    payloads = [frame.payloads for frame in coded]
    decode = timed(device, codec.decode(payloads, height, width, rate=rate), [])
    return {"encode": encode.ms(), "decode": decode.ms()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["416x240", "832x480"], help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=3, help="1 I-frame + P-frames")
    parser.add_argument("--threads", type=int, nargs="+", help="CPU thread counts (default: 1 and all usable cores)")
    parser.add_argument("--cuda", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if args.cuda else "cpu")
    paths = [default_checkpoint(name) for name in (I_FRAME_CKPT, P_FRAME_CKPT)]
    models = load_models(*paths, device=device) if all(map(os.path.isfile, paths)) else stand_in_models(0, device)
    thread_counts = [1] if args.cuda else (args.threads or sorted({1, usable_cores()}))
    name = torch.cuda.get_device_name(device) if args.cuda else "CPU"
    print(f"{name}; {args.frames} frames (1 I + {args.frames - 1} P), q 32; ms per frame")
    print(f"{'size':>9} {'threads':>7} | {'float enc':>9} {'portable enc':>12} {'ratio':>5} | "
          f"{'float dec':>9} {'portable dec':>12} {'ratio':>5}")
    for size in args.sizes:
        width, height = map(int, size.split("x"))
        frames = clip(width, height, args.frames, device)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            measure(models, frames[:1], Numerics.PORTABLE, device)  # warm-up (tables, weight grids)
            f = measure(models, frames, Numerics.FLOAT, device)
            p = measure(models, frames, Numerics.PORTABLE, device)
            print(f"{size:>9} {threads:>7} | {f['encode']:9.0f} {p['encode']:12.0f} {p['encode'] / f['encode']:5.2f} | "
                  f"{f['decode']:9.0f} {p['decode']:12.0f} {p['decode'] / f['decode']:5.2f}")


if __name__ == "__main__":
    main()
