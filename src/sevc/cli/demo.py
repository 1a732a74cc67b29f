"""demo.py: encode and decode the bundled sample clip, print per-frame bpp and PSNR.

Uses the official checkpoints in ckpt/ when both are there, otherwise deterministic stand-in
weights (then the decoded pictures are noise: the point is that every step runs).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import List, Optional

from ..bitstream import StreamHeader
from ..checkpoint import weights_id
from ..frames import count_png_frames, read_png_folder
from ..models import I_FRAME_CKPT, P_FRAME_CKPT, default_checkpoint, load_models, stand_in_models
from .common import ArgumentParser, deterministic, devices, run
from .decode import decode_video
from .encode import encode_video, summary

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "carphone_176x144"
SAMPLE_SIZE = (176, 144)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="SEVC demo: encode and decode the bundled sample clip")
    parser.add_argument("-o", "--output_path", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("-q", "--qp", type=int, default=32, help="q level 0..63 (default 32)")
    parser.add_argument("--ckpt_dir", default="ckpt", help="folder with the official checkpoints")
    parser.add_argument("--cuda", action="store_true", help="run on GPU")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    deterministic()
    device = devices(args.cuda)[0]
    paths = [default_checkpoint(name, Path(args.ckpt_dir)) for name in (I_FRAME_CKPT, P_FRAME_CKPT)]
    if all(os.path.isfile(p) for p in paths):
        print(f"weights: {paths[0]}, {paths[1]}")
        i_frame, p_frame = load_models(*paths, device=device)
    else:
        print(f"weights: no official checkpoints in {args.ckpt_dir}/ (see ckpt/README.md); using deterministic "
              "stand-in weights, so the decoded pictures will be noise until real weights are there")
        i_frame, p_frame = stand_in_models(0, device)
    width, height = SAMPLE_SIZE
    frame_count = count_png_frames(SAMPLE)
    out = Path(args.output_path)
    header = StreamHeader(width, height, args.qp, frame_count=frame_count, weights_id=weights_id(i_frame, p_frame))
    stream = out / "carphone.sevc"
    print(f"encoding {frame_count} frames of {SAMPLE.name} (bundled, see {SAMPLE.parent / 'README.md'}) at q {args.qp}")
    stats = encode_video(i_frame, p_frame, read_png_folder(SAMPLE, width, height), header, stream)
    print("frame  type     bpp   PSNR (dB)")
    for index, frame in enumerate(stats):
        print(f"{index + 1:5d}  {frame.frame_type:>4}  {frame.bytes * 8 / (width * height):6.4f}  {frame.psnr:9.2f}")
    print(f"encoded: {summary(stats, width * height)} -> {stream}")
    decoded = out / "decoded"
    _, _, psnrs = decode_video(i_frame, p_frame, stream, decoded,
                               sources=lambda _: read_png_folder(SAMPLE, width, height))
    same = all(abs(a - b.psnr) < 1e-6 for a, b in zip(psnrs, stats))
    print(f"decoded: {decoded / 'full'} ({width}x{height}) and {decoded / 'skim'} ({width // 4}x{height // 4}); "
          f"decoder output {'equals' if same else 'DIFFERS FROM'} the encoder's reconstruction")
    return 0 if same else 1


def entry() -> int:
    return run(main)
