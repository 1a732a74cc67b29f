"""The numerics modes side by side (not a test): encode and decode time per frame of float,
portable and integer numerics at each frame size and thread count, with the ratios to float, and
(--rss) the peak resident memory of an encode and of a decode in each mode, each measured in a
process of its own.

Timings alternate the modes over --rounds rounds and keep each mode's best round, so that a
machine's slow moments fall on all of them alike. Uses the official checkpoints if they are in
ckpt/, else stand-in weights (speed does not depend on the weights' values). Frames are the
bundled clip, tiled to the size. Run:
  python benchmarks/numerics_speed.py [--sizes 416x240 832x480] [--frames 3] [--threads 1 2]
                                      [--modes float portable integer] [--rounds 2] [--rss] [--cuda]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from typing import Dict, List

import torch
from codec_speed import clip, models_on, timed  # this folder's codec benchmark

from sevc.codec.video import VideoCodec
from sevc.models import Rate
from sevc.weights.models import Models
from sevc.numerics import Numerics
from sevc.runtime import usable_cores

RATE = Rate.level(32)


def measure(models: Models, frames: List[torch.Tensor], mode: Numerics, device: torch.device) -> Dict[str, float]:
    """ms per frame of encoding and decoding `frames` in `mode`."""
    codec = VideoCodec(*models, numerics=mode)
    height, width = frames[0].shape[2:]
    coded: list = []
    encode = timed(device, codec.encode(frames, rate=RATE), coded)
    decode = timed(device, codec.decode([frame.payloads for frame in coded], height, width, rate=RATE), [])
    return {"encode": encode.ms(), "decode": decode.ms()}


def best_rounds(models: Models, frames: List[torch.Tensor], modes: List[Numerics], rounds: int,
                device: torch.device) -> Dict[Numerics, Dict[str, float]]:
    """Each mode's best encode and decode ms/frame over `rounds` rounds of all modes in turn."""
    for mode in modes:  # warm-up: tables, weight grids, packed weights
        measure(models, frames[:1], mode, device)
    best: Dict[Numerics, Dict[str, float]] = {}
    for _ in range(rounds):
        for mode in modes:
            times = measure(models, frames, mode, device)
            best[mode] = {k: min(v, best.get(mode, times)[k]) for k, v in times.items()}
    return best


def peak_of_this_process() -> float:
    """The peak RSS of this process in MiB (VmHWM: unlike ru_maxrss, it starts afresh at exec, not
    from the peak of the process that started this one)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, size: str, frames: int, payloads: str) -> None:
    """In a process of its own: encode `frames` frames of `size` into the file `payloads` or, if it
    exists, decode it; print the process's peak RSS in MiB."""
    width, height = map(int, size.split("x"))
    device = torch.device("cpu")
    codec = VideoCodec(*models_on(device), numerics=Numerics.named(mode))
    if os.path.exists(payloads):
        list(codec.decode(torch.load(payloads, weights_only=True), height, width, rate=RATE))
    else:
        torch.save([frame.payloads for frame in codec.encode(clip(width, height, frames, device), rate=RATE)],
                   payloads)
    print(peak_of_this_process())


def peak_rss(mode: Numerics, size: str, frames: int, threads: int) -> Dict[str, float]:
    """{'encode': MiB, 'decode': MiB}: the peak RSS of an encoding process and of a decoding one."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as folder:
        payloads = os.path.join(folder, "payloads.pt")
        command = [sys.executable, __file__, "--child", str(mode), size, str(frames), payloads]
        return {what: float(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
                for what in ("encode", "decode")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["416x240", "832x480"], help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=3, help="1 I-frame + P-frames")
    parser.add_argument("--threads", type=int, nargs="+", help="CPU thread counts (default: 1 and all usable cores)")
    parser.add_argument("--modes", nargs="+", default=[str(mode) for mode in Numerics], choices=[str(m) for m in Numerics])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all modes in turn; each mode's best is kept")
    parser.add_argument("--rss", action="store_true", help="also the peak RSS of an encode and a decode per mode")
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    device = torch.device("cuda" if args.cuda else "cpu")
    models = models_on(device)
    modes = [Numerics.named(mode) for mode in args.modes]
    thread_counts = [1] if args.cuda else (args.threads or sorted({1, usable_cores()}))
    name = torch.cuda.get_device_name(device) if args.cuda else "CPU"
    print(f"{name}; {args.frames} frames (1 I + {args.frames - 1} P), q 32; ms per frame (ratio to {modes[0]}), "
          f"best of {args.rounds} alternated rounds")
    print(f"{'size':>9} {'threads':>7} |" + "".join(f" {str(m) + ' enc':>16} {str(m) + ' dec':>16} |" for m in modes))
    for size in args.sizes:
        width, height = map(int, size.split("x"))
        frames = clip(width, height, args.frames, device)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            best = best_rounds(models, frames, modes, args.rounds, device)
            base = best[modes[0]]
            print(f"{size:>9} {threads:>7} |" + "".join(
                f" {best[m]['encode']:9.0f} ({best[m]['encode'] / base['encode']:4.2f})"
                f" {best[m]['decode']:9.0f} ({best[m]['decode'] / base['decode']:4.2f}) |" for m in modes))
    if args.rss and not args.cuda:
        print(f"peak RSS, MiB ({args.frames} frames, {thread_counts[-1]} threads; ratio to {modes[0]})")
        for size in args.sizes:
            rss = {m: peak_rss(m, size, args.frames, thread_counts[-1]) for m in modes}
            for what in ("encode", "decode"):
                print(f"{size:>9} {what:>7} |" + "".join(
                    f" {str(m)} {rss[m][what]:7.0f} ({rss[m][what] / rss[modes[0]][what]:4.2f}) |" for m in modes))


if __name__ == "__main__":
    main()
