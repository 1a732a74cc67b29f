"""Does the training code learn? (not a test) CPU-scale runs of the I-frame and base stages on real
frames, judged on held-out clips by real streams, beside JPEG and WebP (Pillow).

1. The I-frame stage (train.py's trainer) from fresh weights on benchmarks/data/train (8 clips cut
   from 3 videos, see its README), one lambda per q anchor: rates on noisy latents for a smooth
   start, then on rounded latents (the stream's bits, see the trainer's noisy_rate_steps).
2. The base stage from that I-frame model, on clips of an I-frame and P-frames, likewise.
3. On the held-out clips (tests/data/clips/bikes_256x128 and the bundled carphone clip, neither
   trained on): each anchor's I-frames compressed and decompressed (bytes of the real payloads),
   beside JPEG and WebP at the same bpp (their quality sweep interpolated); then the base layer's
   P-frames (a base-layer-only stream) beside the same 4x-downsampled frames coded as I-frames.

Prints the numbers and (--figure) plots the training curves and the RD points. Run:
  python benchmarks/train_sanity.py [--i_steps 2600] [--base_steps 1200] [--threads 2] [--keep DIR] [--figure FILE]
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from sevc.codec.video import VideoCodec
from sevc.psnr import psnr
from sevc.io.frames import png_frames, read_png
from sevc.latent_codecs import use_noisy_rate
from sevc.models import IntraNoAR, Rate, SEVC
from sevc.weights import load_checkpoint
from sevc.nn.padding import crop
from sevc.nn.resample import imresize
from sevc.training.trainer import DEFAULTS, train

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "benchmarks" / "data" / "train"
HELD_OUT = (REPO / "tests" / "data" / "clips" / "bikes_256x128", REPO / "src" / "sevc" / "data" / "carphone_176x144")
QUALITIES = range(1, 96, 2)

Point = Tuple[float, float]  # (bpp, PSNR dB)


def stage_config(stage: str, steps: int, args: argparse.Namespace, init: Dict[str, str]) -> Dict:
    """A training configuration for `stage` on the bundled training clips."""
    intra = stage == "i_frame"
    side = args.crop if intra else args.base_crop
    noisy_steps = args.i_noisy_steps if intra else args.base_noisy_steps
    return {**DEFAULTS, "stage": stage, "data": {"type": "folders", "root": str(TRAIN)},
            "sequence_length": 1 if intra else args.frames, "crop": [side, side],
            "batch_size": args.batch if intra else args.base_batch, "steps": steps, "lr": args.lr,
            "clip_grad_norm": args.clip_grad_norm, "lambdas": args.lambdas, "anchors": len(args.lambdas),
            "log_every": args.log_every, "save_every": steps, "num_workers": 0, "init": init,
            "noisy_rate_steps": noisy_steps}


def run_stage(stage: str, steps: int, args: argparse.Namespace, runs: Path, init: Dict[str, str]) -> List[Dict]:
    """Train one stage into runs/<stage>; its log lines."""
    started = time.time()
    train(stage_config(stage, steps, args, init), runs / stage)
    log = read_logs(runs)[stage]
    print(f"{stage}: {steps} steps in {time.time() - started:.0f} s; last logged {log[-1]}", flush=True)
    return log


def train_stages(runs: Path, args: argparse.Namespace) -> Tuple[Dict[str, List[Dict]], Dict[str, float]]:
    """Train the I-frame stage (i_steps > 0), then the base stage (base_steps > 0) from the I-frame
    model in runs/i_frame: their logs and seconds."""
    logs, seconds = {}, {}
    for stage, steps in (("i_frame", args.i_steps), ("base", args.base_steps)):
        if steps:
            init = {} if stage == "i_frame" else {"i_frame": str(runs / "i_frame" / "i_frame.pth.tar")}
            started = time.time()
            logs[stage] = run_stage(stage, steps, args, runs, init)
            seconds[stage] = time.time() - started
    return logs, seconds


def read_logs(runs: Path) -> Dict[str, List[Dict]]:
    """The training logs of the stages kept in `runs`."""
    return {stage: [json.loads(line) for line in (runs / stage / "log.jsonl").read_text().splitlines()]
            for stage in ("i_frame", "base") if (runs / stage / "log.jsonl").is_file()}


def noisy_rate_steps(runs: Path) -> Dict[str, int]:
    """The steps each stage kept in `runs` trained with noisy rates (from its configuration)."""
    return {stage: json.loads((runs / stage / "config.json").read_text()).get("noisy_rate_steps", 0)
            for stage in ("i_frame", "base") if (runs / stage / "config.json").is_file()}


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Frames in [0, 1] as a decoder writes them (8-bit levels), back in [0, 1]."""
    return (x.clamp(0, 1) * 255).round() / 255


def held_out(count: int) -> List[List[torch.Tensor]]:
    """The first `count` frames [1, 3, H, W] of each held-out clip."""
    return [[read_png(path) for path in png_frames(folder)[:count]] for folder in HELD_OUT]


def intra_point(i_frame: IntraNoAR, frames: Sequence[torch.Tensor], rate: Rate) -> Point:
    """Mean bpp of the real payloads and mean PSNR of the decoded frames, coded as I-frames."""
    bpps, psnrs = [], []
    for x in frames:
        height, width = x.shape[2:]
        payload = i_frame.compress(IntraNoAR.pad_frame(x), rate=rate).payloads[0]
        decoded = crop(i_frame.decompress(payload, height, width, rate=rate), height, width)
        bpps.append(8 * len(payload) / (height * width))
        psnrs.append(psnr(to_8bit(decoded), x).item())
    return float(np.mean(bpps)), float(np.mean(psnrs))


def training_rate(i_frame: IntraNoAR, frames: Sequence[torch.Tensor], rate: Rate, noisy: bool) -> float:
    """Mean bpp the training objective sees for the frames (train mode): on noisy latents (the
    warm-up's proxy) or on rounded ones (the later steps; the test path's estimate too)."""
    i_frame.train()
    use_noisy_rate(i_frame, noisy)
    torch.manual_seed(0)
    try:
        bits = [i_frame(IntraNoAR.pad_frame(x), rate=rate).bits.item() / (x.shape[2] * x.shape[3]) for x in frames]
    finally:
        use_noisy_rate(i_frame, False)
        i_frame.eval()
    return float(np.mean(bits))


def pillow_curve(frames: Sequence[torch.Tensor], kind: str) -> List[Point]:
    """(mean bpp, mean PSNR) of the frames coded by Pillow's `kind` (JPEG / WEBP) at each quality."""
    pictures = [Image.fromarray((x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()) for x in frames]
    curve = []
    for quality in QUALITIES:
        bpps, psnrs = [], []
        for picture, x in zip(pictures, frames):
            buffer = io.BytesIO()
            picture.save(buffer, kind, quality=quality)
            decoded = torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255)
            bpps.append(8 * buffer.tell() / (picture.width * picture.height))
            psnrs.append(psnr(decoded.permute(2, 0, 1)[None], to_8bit(x)).item())
        curve.append((float(np.mean(bpps)), float(np.mean(psnrs))))
    return sorted(curve)


def psnr_at(curve: Sequence[Point], bpp: float) -> float:
    """PSNR of an RD curve at `bpp`, linearly interpolated; NaN outside the curve's bpp range."""
    rates, quality = zip(*curve)
    if not rates[0] <= bpp <= rates[-1]:
        return math.nan
    return float(np.interp(bpp, rates, quality))


def versus_intra(p_frame: Point, intra: Sequence[Point]) -> str:
    """A P-frame point against the I-frame points of the same frames: the PSNR it gains at equal
    bpp (on the I-frame curve, interpolated), or whether it beats an I-frame point outright."""
    gain = p_frame[1] - psnr_at(sorted(intra), p_frame[0])
    if not math.isnan(gain):
        return f"{gain:+.2f} dB at equal bpp"
    if any(p_frame[0] <= bpp and p_frame[1] >= quality for bpp, quality in intra):
        return "fewer bits, higher PSNR"
    return "-"


def base_frames(frames: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The frames as the base layer sees them: 4x bicubic-downsampled, on 8-bit levels."""
    return [to_8bit(imresize(x, 0.25)) for x in frames]


def base_layer_points(i_frame: IntraNoAR, p_frame: SEVC, frames: Sequence[torch.Tensor],
                      rate: Rate) -> Dict[str, Point]:
    """The P-frames of a base-layer-only stream of `frames` (bpp of the base payloads per base-layer
    pixel, PSNR of the decoded base layer against the downsampled frames), and the same downsampled
    P-frames coded as I-frames."""
    codec = VideoCodec(i_frame, p_frame)
    targets = base_frames(frames)
    height, width = targets[0].shape[2:]
    coded = list(codec.encode(frames, rate=rate, fast=True))
    decoded = list(codec.decode([frame.payloads for frame in coded], *frames[0].shape[2:], rate=rate, fast=True))
    p_bpps = [8 * len(frame.payloads[0]) / (height * width) for frame in coded[1:]]
    p_psnrs = [psnr(to_8bit(frame.skim), target).item() for frame, target in zip(decoded[1:], targets[1:])]
    return {"P": (float(np.mean(p_bpps)), float(np.mean(p_psnrs))), "I": intra_point(i_frame, targets[1:], rate)}


def evaluate(runs: Path, args: argparse.Namespace) -> Dict:
    """Every held-out number: I-frames beside JPEG / WebP, base-layer P-frames beside I-frames."""
    i_frame, p_frame = IntraNoAR(), SEVC()
    load_checkpoint(i_frame, runs / "i_frame" / "i_frame.pth.tar")
    base_run = (runs / "base" / "p_frame.pth.tar").is_file()
    if base_run:
        load_checkpoint(p_frame, runs / "base" / "p_frame.pth.tar")
    for model in (i_frame, p_frame):
        model.eval().update(force=True)
    clips = held_out(args.held_out_frames)
    frames = [x for clip in clips for x in clip]
    results: Dict = {"anchors": {}, "untrained": [], "jpeg": pillow_curve(frames, "JPEG"),
                     "webp": pillow_curve(frames, "WEBP")}
    torch.manual_seed(DEFAULTS["seed"])  # the trainer's fresh weights: the I-frame model before training
    untrained = IntraNoAR().eval()
    untrained.update(force=True)
    judged = [clip[:args.frames] for clip in clips] if base_run else []  # P-frames at the positions trained
    with torch.no_grad():
        for anchor, lam in enumerate(args.lambdas):
            rate = Rate.of_anchor(anchor)
            results["untrained"].append(intra_point(untrained, frames, rate))
            point = intra_point(i_frame, frames, rate)
            estimates = {"training_bpp": training_rate(i_frame, frames, rate, False),
                         "noisy_bpp": training_rate(i_frame, frames, rate, True)}
            layers = [base_layer_points(i_frame, p_frame, clip, rate) for clip in judged]
            results["anchors"][anchor] = {"lambda": lam, "intra": point, **estimates, "base_layer": layers}
    return results


def shown(value: float, spec: str = ".2f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def report(results: Dict, seconds: Dict[str, float]) -> None:
    if seconds:
        print("\ntraining time: " + ", ".join(f"{stage} {value:.0f} s" for stage, value in seconds.items()))
    print("\nheld-out I-frames (real streams) beside JPEG and WebP at the same bpp")
    print("(the same frames' bpp as the training objective sees them: on rounded latents (the last steps) and "
          "on noisy latents (the warm-up))")
    print("| anchor | lambda | bpp | training bpp | noisy-rate bpp | PSNR dB | JPEG dB | WebP dB | vs JPEG | vs WebP |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for anchor, (bpp, quality) in enumerate(results["untrained"]):
        print(f"| {anchor} (before training) | - | {bpp:.3f} | - | - | {quality:.2f} | - | - | - | - |")
    for anchor, entry in results["anchors"].items():
        bpp, quality = entry["intra"]
        jpeg, webp = psnr_at(results["jpeg"], bpp), psnr_at(results["webp"], bpp)
        print(f"| {anchor} | {entry['lambda']:g} | {bpp:.3f} | {entry['training_bpp']:.3f} | "
              f"{entry['noisy_bpp']:.3f} | {quality:.2f} | "
              f"{shown(jpeg)} | {shown(webp)} | {shown(quality - jpeg, '+.2f')} | {shown(quality - webp, '+.2f')} |")
    for name in ("jpeg", "webp"):
        (low, low_db), (high, high_db) = results[name][0], results[name][-1]
        print(f"{name.upper()} qualities {QUALITIES.start}..{QUALITIES[-1]}: {low:.3f} bpp ({low_db:.2f} dB) to "
              f"{high:.3f} bpp ({high_db:.2f} dB); '-': outside that range")
    if not any(entry["base_layer"] for entry in results["anchors"].values()):
        return
    print("\nheld-out base layer (4x-downsampled frames): P-frames of a base-layer stream vs the same frames "
          "as I-frames")
    print("| anchor | clip | P bpp | P dB | I bpp | I dB | P bits / I bits | P vs the I-frame curve |")
    print("|---|---|---|---|---|---|---|---|")
    for anchor, entry in results["anchors"].items():
        for k, (folder, points) in enumerate(zip(HELD_OUT, entry["base_layer"])):
            (p_bpp, p_db), (i_bpp, i_db) = points["P"], points["I"]
            intra = [other["base_layer"][k]["I"] for other in results["anchors"].values()]
            print(f"| {anchor} | {folder.name} | {p_bpp:.3f} | {p_db:.2f} | {i_bpp:.3f} | {i_db:.2f} | "
                  f"{p_bpp / i_bpp:.2f} | {versus_intra(points['P'], intra)} |")


def plot(logs: Dict[str, List[Dict]], noisy_steps: Dict[str, int], results: Dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [stage for stage in ("i_frame", "base") if logs.get(stage)]
    figure, axes = plt.subplots(1, len(stages) + 1, figsize=(5 * (len(stages) + 1), 4))
    for ax, stage in zip(axes, stages):
        prefix = "" if stage == "i_frame" else "base_"
        steps = [line["step"] for line in logs[stage]]
        ax.plot(steps, [line["loss"] for line in logs[stage]], label="loss", color="k")
        ax.plot(steps, [line[f"{prefix}bpp"] for line in logs[stage]], label="bpp", color="tab:blue")
        ax.set_xlabel("step")
        ax.set_title(f"{stage} stage (training batches)")
        twin = ax.twinx()
        twin.plot(steps, [line[f"{prefix}psnr"] for line in logs[stage]], label="PSNR", color="tab:red")
        twin.set_ylabel("PSNR dB", color="tab:red")
        if noisy_steps.get(stage):
            ax.axvline(noisy_steps[stage], color="gray", linestyle=":", label="noisy -> rounded rates")
        handles, labels = (sum(pair, []) for pair in zip(ax.get_legend_handles_labels(),
                                                         twin.get_legend_handles_labels()))
        twin.legend(handles, labels, loc="center right")
    ax = axes[-1]
    for name in ("jpeg", "webp"):
        ax.plot(*zip(*results[name]), label=name.upper(), marker=".")
    ax.plot(*zip(*[entry["intra"] for entry in results["anchors"].values()]), "o-", label="sevc I-frame, trained")
    ax.plot(*zip(*results["untrained"]), "x", label="sevc I-frame, before training")
    ax.set_xlabel("bpp")
    ax.set_ylabel("PSNR dB")
    ax.set_xlim(0, 1.2 * max(bpp for bpp, _ in results["untrained"]))
    ax.set_title("held-out frames (real streams)")
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"figure: {path}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--i_steps", type=int, default=2600, help="I-frame stage steps (0: train only the base stage, "
                        "from the I-frame run kept in --keep)")
    parser.add_argument("--i_noisy_steps", type=int, default=2000,
                        help="the I-frame stage's first steps with rates on noisy latents")
    parser.add_argument("--base_steps", type=int, default=1200, help="base stage steps (0: skip the stage)")
    parser.add_argument("--base_noisy_steps", type=int, default=600,
                        help="the base stage's first steps with rates on noisy latents")
    parser.add_argument("--crop", type=int, default=64, help="I-frame stage crop side (a multiple of 16)")
    parser.add_argument("--batch", type=int, default=8, help="I-frame stage crops per step")
    parser.add_argument("--base_crop", type=int, default=128,
                        help="base stage crop side (the base layer codes a quarter)")
    parser.add_argument("--base_batch", type=int, default=4, help="base stage clips per step")
    parser.add_argument("--frames", type=int, default=3, help="frames per base-stage clip (I-frame + P-frames)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--clip_grad_norm", type=float, default=1.0)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[50.0, 400.0], help="one per q anchor")
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--held_out_frames", type=int, default=4,
                        help="frames of each held-out clip (P-frames are judged on the first --frames of them: "
                        "a P-frame's feature adaptor depends on its position, and the base stage trains those of "
                        "its clips' positions only)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--keep", help="keep the runs (checkpoints, logs) in this new folder")
    parser.add_argument("--from_runs", help="evaluate the runs kept in this folder (--keep) instead of training")
    parser.add_argument("--figure", help="write the figure (PNG) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(args.from_runs or args.keep or scratch)
        logs, seconds = (read_logs(runs), {}) if args.from_runs else train_stages(runs, args)
        results = evaluate(runs, args)
        noisy_steps = noisy_rate_steps(runs)
    report(results, seconds)
    if args.figure:
        plot(logs, noisy_steps, results, args.figure)


if __name__ == "__main__":
    main(sys.argv[1:])
