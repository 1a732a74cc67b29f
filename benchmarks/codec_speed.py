"""Speed of the whole codec (not a test): ms per frame of the test path, encoding, full decoding
and skim decoding at one frame size, over all frames and over the P-frames alone (skim decoding
still decodes I-frames in full), in each arithmetic asked for, side by side, with the peak GPU
memory of each measurement and the speed-up over the first arithmetic.

Arithmetics: fp32 (the published float32), bf16 / fp16 (mixed precision, torch.autocast),
portable and integer (sevc's bit-exact numerics: float64 sums, or integer sums on integer units). `--profile N` then prints, for the first
arithmetic, the N operations that take the most time (GPU time with --cuda) over one encode and
one full decode of the frames (torch.profiler), to see where the time goes. Uses the official checkpoints if they are in ckpt/,
else stand-in weights (speed does not depend on the weights' values, only the rate does, a
little). Frames are the bundled clip, tiled to the size. Run, e.g.:

    python benchmarks/codec_speed.py --width 1920 --height 1080 --cuda --arithmetic fp32 bf16 fp16
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple, TypeVar

import torch

from sevc.codec.video import VideoCodec
from sevc.io.frames import read_png_folder
from sevc.io.samples import SAMPLE_CLIP, SAMPLE_SIZE
from sevc.models import Rate
from sevc.weights.models import I_FRAME_CKPT, P_FRAME_CKPT, Models, default_checkpoint, load_models
from sevc.weights.stand_in import stand_in_models
from sevc.numerics import Numerics, Precision
from sevc.runtime import deterministic

ARITHMETICS = ("fp32", "bf16", "fp16", "portable", "integer")
MEASURES = ("test path", "encode", "decode full", "decode skim")
GIB = 2 ** 30
T = TypeVar("T")


def models_on(device: torch.device) -> Models:
    """The official checkpoints if they are in ckpt/, else stand-in weights (seed 0)."""
    paths = [default_checkpoint(name) for name in (I_FRAME_CKPT, P_FRAME_CKPT)]
    return load_models(*paths, device=device) if all(map(os.path.isfile, paths)) else stand_in_models(0, device)


def clip(width: int, height: int, frames: int, device: torch.device) -> List[torch.Tensor]:
    """`frames` frames [1, 3, height, width]: the bundled clip's frames, tiled and cropped."""
    sample = list(read_png_folder(SAMPLE_CLIP, *SAMPLE_SIZE))
    tiles = (-(-height // SAMPLE_SIZE[1]), -(-width // SAMPLE_SIZE[0]))
    return [sample[k % len(sample)].repeat(1, 1, *tiles)[..., :height, :width].to(device) for k in range(frames)]


@dataclass
class Timing:
    """One measurement: seconds per frame (in coding order; frame 0 is the I-frame) and the peak
    GPU memory in GiB (None on a CPU)."""

    seconds: List[float]
    peak: Optional[float]

    def ms(self, frames: slice = slice(None)) -> float:
        """Mean milliseconds per frame over `frames` (all of them by default)."""
        chosen = self.seconds[frames]
        return sum(chosen) / len(chosen) * 1000


def timed(device: torch.device, coded: Iterator[T], keep: List[T]) -> Timing:
    """Time each frame a codec generator yields (the frames are appended to `keep`)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    start = time.perf_counter()
    for frame in coded:
        if cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        seconds.append(now - start)
        keep.append(frame)
        start = now
    return Timing(seconds, torch.cuda.max_memory_allocated(device) / GIB if cuda else None)


def codec_for(models: Models, arithmetic: str) -> VideoCodec:
    if arithmetic in ("portable", "integer"):
        return VideoCodec(*models, numerics=Numerics.named(arithmetic))
    return VideoCodec(*models, precision=Precision.named(arithmetic))


def measure(codec: VideoCodec, frames: List[torch.Tensor], rate: Rate,
            device: torch.device) -> Tuple[Dict[str, Timing], bool]:
    """({measure: timing} over the frames, after a two-frame warm-up; whether the decoder's full
    and skim frames equal the encoder's reconstructions)."""
    height, width = frames[0].shape[2:]
    list(codec.evaluate(frames[:2], i_rate=rate))
    coded, decoded = [], []
    results = {"test path": timed(device, codec.evaluate(frames, i_rate=rate), []),
               "encode": timed(device, codec.encode(frames, rate=rate), coded)}
    payloads = [frame.payloads for frame in coded]
    results["decode full"] = timed(device, codec.decode(payloads, height, width, rate=rate), decoded)
    results["decode skim"] = timed(device, codec.decode(payloads, height, width, rate=rate, skim=True), [])
    exact = all(torch.equal(ours.full, theirs.full) and torch.equal(ours.skim, theirs.skim)
                for ours, theirs in zip(decoded, coded))
    return results, exact


def profile(codec: VideoCodec, frames: List[torch.Tensor], rate: Rate, device: torch.device, rows: int) -> str:
    """torch.profiler's table of the `rows` costliest operations of one encode and one full decode."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    height, width = frames[0].shape[2:]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profiler(activities=activities) as run:
        payloads = [frame.payloads for frame in codec.encode(frames, rate=rate)]
        list(codec.decode(payloads, height, width, rate=rate))
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return run.key_averages().table(sort_by=key, row_limit=rows)


def cell(timing: Timing, frames: slice, reference: float) -> str:
    """'ms/frame [peak GiB] speed-up' of one measurement over `frames`."""
    memory = "" if timing.peak is None else f" {timing.peak:5.1f} GiB"
    return f"{timing.ms(frames):9.1f}{memory} {reference / timing.ms(frames):5.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--frames", type=int, default=5, help="1 I-frame + P-frames")
    parser.add_argument("-q", type=int, default=32)
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--arithmetic", nargs="+", choices=ARITHMETICS, default=["fp32"],
                        help="columns, side by side (half precision is slow on most CPUs)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N costliest operations of the first arithmetic")
    args = parser.parse_args()
    deterministic()
    device = torch.device("cuda" if args.cuda else "cpu")
    models = models_on(device)
    frames = clip(args.width, args.height, args.frames, device)
    rate = Rate.level(args.q)
    table, exact = {}, {}
    for arithmetic in args.arithmetic:
        table[arithmetic], exact[arithmetic] = measure(codec_for(models, arithmetic), frames, rate, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread"
    unit = "ms/frame, peak GPU memory, speed-up" if args.cuda else "ms/frame, speed-up"
    print(f"{args.width}x{args.height}, {args.frames} frames (1 I + {args.frames - 1} P), q {args.q}, {name} "
          f"({unit} over {args.arithmetic[0]})")
    width = len(cell(Timing([1.0], 0.0 if args.cuda else None), slice(None), 1.0))
    print(" " * 18 + "".join(f"{arithmetic:>{width + 2}s}" for arithmetic in args.arithmetic))
    for frames_of, label in ((slice(None), "all"), (slice(1, None), "P")):
        for what in MEASURES:
            reference = table[args.arithmetic[0]][what].ms(frames_of)
            print(f"{what + ', ' + label:18s}" + "".join("  " + cell(table[arithmetic][what], frames_of, reference)
                                                       for arithmetic in args.arithmetic))
    print("decoded frames equal the encoder's: " + ", ".join(f"{arithmetic} {'yes' if same else 'NO'}"
                                                             for arithmetic, same in exact.items()))
    if args.profile:
        print(profile(codec_for(models, args.arithmetic[0]), frames, rate, device, args.profile))


if __name__ == "__main__":
    main()
