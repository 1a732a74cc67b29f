"""Speed of the whole codec (not a test): frames per second of the test path, encoding,
full decoding and skim decoding, at one frame size.

Uses the official checkpoints if they are in ckpt/, else stand-in weights (speed does not
depend on the weights' values, only the rate does, a little). Frames are the bundled clip,
tiled to the size. Run:  python benchmarks/codec_speed.py --width 1920 --height 1080 --cuda
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from sevc.cli.common import deterministic
from sevc.codec.video import VideoCodec
from sevc.io.frames import read_png_folder
from sevc.io.samples import SAMPLE_CLIP, SAMPLE_SIZE
from sevc.models import Rate
from sevc.models.loading import I_FRAME_CKPT, P_FRAME_CKPT, default_checkpoint, load_models, stand_in_models


def clip(width: int, height: int, frames: int, device) -> list:
    sample = list(read_png_folder(SAMPLE_CLIP, *SAMPLE_SIZE))
    tiles = (-(-height // SAMPLE_SIZE[1]), -(-width // SAMPLE_SIZE[0]))
    return [sample[k % len(sample)].repeat(1, 1, *tiles)[..., :height, :width].to(device) for k in range(frames)]


def timed(device, fn) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--frames", type=int, default=5, help="1 I-frame + P-frames")
    parser.add_argument("-q", type=int, default=32)
    parser.add_argument("--cuda", action="store_true")
    args = parser.parse_args()
    deterministic()
    device = torch.device("cuda" if args.cuda else "cpu")
    paths = [default_checkpoint(name) for name in (I_FRAME_CKPT, P_FRAME_CKPT)]
    models = load_models(*paths, device=device) if all(map(os.path.isfile, paths)) else stand_in_models(0, device)
    codec = VideoCodec(*models)
    frames = clip(args.width, args.height, args.frames, device)
    rate = Rate.level(args.q)
    list(codec.evaluate(frames[:2], i_rate=rate))  # warm-up
    coded = []
    seconds = {
        "test path": timed(device, lambda: list(codec.evaluate(frames, i_rate=rate))),
        "encode": timed(device, lambda: coded.extend(codec.encode(frames, rate=rate))),
    }
    payloads = [c.payloads for c in coded]
    seconds["decode full"] = timed(device, lambda: list(codec.decode(payloads, args.height, args.width, rate=rate)))
    seconds["decode skim"] = timed(device, lambda: list(codec.decode(payloads, args.height, args.width, rate=rate,
                                                                     base_only=True)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread"
    print(f"{args.width}x{args.height}, {args.frames} frames (1 I + {args.frames - 1} P), q {args.q}, {name}")
    for what, value in seconds.items():
        print(f"  {what:12s} {args.frames / value:7.2f} frames/s  ({value / args.frames * 1000:8.1f} ms/frame)")


if __name__ == "__main__":
    main()
