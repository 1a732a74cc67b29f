"""demo.py: encode and decode the bundled sample clip, print per-frame bpp and PSNR.

Uses the official checkpoints in ckpt/ when both are there, otherwise deterministic stand-in
weights (then the decoded pictures are noise: the point is that every step runs).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

import torch

from ..codec.bitstream import StreamHeader, open_stream
from ..codec.files import FrameStats, decode_to_folder, encode_file
from ..psnr import psnr
from ..io.frames import count_png_frames, read_png_folder
from ..io.samples import SAMPLE_CLIP, SAMPLE_SIZE
from ..weights.models import I_FRAME_CKPT, P_FRAME_CKPT, Models, default_checkpoint, load_models
from ..models.rate import FINE_LEVELS
from ..weights.stand_in import stand_in_models
from ..numerics import Numerics
from ..runtime import deterministic, thread_count
from .common import ArgumentParser, add_quiet_arg, add_threads_arg, devices, int_in, progress, run
from .encode import summary


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="SEVC demo: encode and decode the bundled sample clip")
    parser.add_argument("-o", "--output_path", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("-q", "--qp", type=int_in(0, FINE_LEVELS - 1), default=32, help="q level 0..63 (default 32)")
    parser.add_argument("--ckpt_dir", default="ckpt", help="folder with the official checkpoints")
    parser.add_argument("--cuda", action="store_true", help="run on GPU")
    parser.add_argument("--numerics", choices=[str(mode) for mode in Numerics], default="integer",
                        help="arithmetic of the stream (default integer: decodes bit-exactly anywhere)")
    add_threads_arg(parser)
    add_quiet_arg(parser)
    return parser.parse_args(argv)


def _models(ckpt_dir: str, device: str) -> Models:
    """The official models if both checkpoints are in `ckpt_dir`, else stand-in weights (with a notice)."""
    paths = [default_checkpoint(name, Path(ckpt_dir)) for name in (I_FRAME_CKPT, P_FRAME_CKPT)]
    if all(os.path.isfile(p) for p in paths):
        print(f"weights: {paths[0]}, {paths[1]}")
        return load_models(*paths, device=device)
    print(f"weights: no official checkpoints in {ckpt_dir}/ (see ckpt/README.md); using deterministic "
          "stand-in weights, so the decoded pictures will be noise until real weights are there")
    return stand_in_models(0, device)


def _encode(models: Models, header: StreamHeader, path: Path, quiet: bool) -> List[FrameStats]:
    """Encode the bundled clip into `path`, printing each frame's row as it is coded."""
    stats: List[FrameStats] = []
    print("frame  type     bpp   PSNR (dB)")
    with progress(header.frame_count, "frame", quiet) as bar:
        for frame in encode_file(models, read_png_folder(SAMPLE_CLIP, header.width, header.height), header, path):
            stats.append(frame)
            bar.write(f"{len(stats):5d}  {frame.frame_type:>4}  "
                      f"{frame.bytes * 8 / (header.width * header.height):6.4f}  {frame.psnr:9.2f}", file=sys.stdout)
            bar.update()
    return stats


def _decode(models: Models, stream_path: Path, folder: Path, quiet: bool) -> List[float]:
    """Decode the stream into `folder`; the PSNR of each decoded frame against the clip."""
    stream = open_stream(stream_path)
    sources = read_png_folder(SAMPLE_CLIP, stream.header.width, stream.header.height)
    psnrs = []
    with progress(stream.header.frame_count, "frame", quiet) as bar:
        for (frame, _), source in zip(decode_to_folder(models, stream, folder), sources):
            psnrs.append(float(psnr(frame.full, source.to(models.device))))
            bar.update()
    return psnrs


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    mode = Numerics.named(args.numerics)
    deterministic(thread_count(args.threads, mode))
    models = _models(args.ckpt_dir, devices(args.cuda)[0])
    width, height = SAMPLE_SIZE
    frame_count = count_png_frames(SAMPLE_CLIP)
    out = Path(args.output_path)
    header = StreamHeader(width, height, args.qp, frame_count=frame_count, weights_id=models.weights_id,
                          numerics=mode)
    stream_path = out / "carphone.sevc"
    print(f"encoding {frame_count} frames of {SAMPLE_CLIP.name} (bundled, see {SAMPLE_CLIP.parent / 'README.md'}) "
          f"at q {args.qp}, {header.numerics} numerics, {torch.get_num_threads()} CPU threads")
    stats = _encode(models, header, stream_path, args.quiet)
    print(f"encoded: {summary(stats, width * height, stream_path)} -> {stream_path}")
    decoded_path = out / "decoded"
    print(f"decoding {stream_path}")
    psnrs = _decode(models, stream_path, decoded_path, args.quiet)
    same = psnrs == [frame.psnr for frame in stats]
    print(f"decoded: {decoded_path / 'full'} ({width}x{height}) and {decoded_path / 'skim'} "
          f"({width // 4}x{height // 4}); decoder output {'equals' if same else 'DIFFERS FROM'} the encoder's "
          "reconstruction")
    return 0 if same else 1


def entry() -> int:
    return run(main)
