"""decoder.py: decode an SEVC bitstream (sevc container or the published folder layout).

Writes `OUT/full/im00001.png, ...` (full resolution) and `OUT/skim/im00001.png, ...` (the base
layer's 4x-downsampled video), and with `--yuv` also `OUT/full.yuv` / `OUT/skim.yuv`.
`--skim` decodes the base layer only: enhancement packets of a sevc stream are not even read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import torch
from tqdm import tqdm

from .. import memory
from ..codec.bitstream import StreamHeader, open_stream
from ..codec.files import DECODED, decode_to_folder, decoded_layers
from ..eval.metrics import psnr
from ..io.frames import read_frames
from ..io.outputs import check_folder
from ..models.loading import load_models
from ..numerics import describe
from .common import (ArgumentParser, add_input_args, add_model_args, add_overwrite_arg, deterministic, devices, run,
                     source_type, warn_memory)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Decode an SEVC bitstream")
    add_input_args(parser, required=False)
    add_model_args(parser)
    parser.add_argument("-b", "--bin_path", type=str, required=True, help="a sevc file or an official stream folder")
    parser.add_argument("-o", "--output_path", type=str, required=True, help="output folder")
    parser.add_argument("--skim", action="store_true", help="decode only the base layer (4x-downsampled video)")
    parser.add_argument("--yuv", action="store_true", help="also write raw YUV 4:2:0 files (full.yuv, skim.yuv)")
    add_overwrite_arg(parser)
    return parser.parse_args(argv)


def _sources(args: argparse.Namespace, header: StreamHeader) -> Optional[Iterator[torch.Tensor]]:
    """The frames the stream was encoded from (-i), to report PSNR; None without -i."""
    if not args.input_path:
        return None
    return iter(read_frames(args.input_path, source_type(args), header.width, header.height, header.frame_count,
                            args.yuv_matrix, args.yuv_range))


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    inputs = [args.bin_path, *([args.input_path] if args.input_path else [])]
    check_folder(args.output_path, DECODED, args.overwrite, inputs)
    stream = open_stream(args.bin_path, skip_enhancement=args.skim, refresh_interval=args.refresh_interval)
    header = stream.header
    sources = _sources(args, header)
    device = devices(args.cuda)[0]
    warn_memory(header.width, header.height, header.numerics, device)
    deterministic(header.numerics)
    models = load_models(args.i_frame_model_path, args.p_frame_model_path, device, args.ec_thread,
                         args.stream_part_i, args.stream_part_p)
    yuv = (args.yuv_matrix, args.yuv_range) if args.yuv else None
    pixels = header.width * header.height
    psnrs: List[float] = []
    with memory.guard(header.width, header.height, header.numerics, device), \
            tqdm(total=header.frame_count, unit="frame", file=sys.stderr) as bar:
        for frame, size in decode_to_folder(models, stream, args.output_path, args.skim, yuv, args.overwrite,
                                            inputs):
            status = "" if args.skim else f"{size * 8 / pixels:.4f} bpp"
            if sources is not None and frame.full is not None:
                psnrs.append(float(psnr(frame.full, next(sources).to(models.device))))
                status += f" {psnrs[-1]:.2f} dB"
            bar.set_postfix_str(status)
            bar.update()
    layers = " and ".join(decoded_layers(header, args.skim))
    quality = f", {sum(psnrs) / len(psnrs):.2f} dB PSNR" if psnrs else ""
    print(f"decoded {header.frame_count} frames ({stream.kind} stream, {describe(header.numerics, header.precision)}, "
          f"{layers}) of "
          f"{header.width}x{header.height}{quality} -> {Path(args.output_path)}")
    return 0


def entry() -> int:
    return run(main)
