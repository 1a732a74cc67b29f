"""decoder.py: decode an SEVC bitstream (sevc container or the published folder layout).

Writes `OUT/full/im00001.png, ...` (full resolution) and `OUT/skim/im00001.png, ...` (the base
layer's 4x-downsampled video), and with `--yuv` also `OUT/full.yuv` / `OUT/skim.yuv`.
`--skim` decodes the base layer only: enhancement packets of a sevc stream are not even read.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator, List, Optional

import torch

from .. import memory
from ..codec.bitstream import Stream, StreamHeader, open_stream
from ..codec.files import DECODED, decode_to_folder, decoded_layers
from ..codec.schedule import DEFAULT_REFRESH_INTERVAL
from ..errors import SevcError
from ..psnr import psnr
from ..io.frames import read_frames
from ..io.outputs import check_folder
from ..numerics import describe
from ..runtime import deterministic, thread_count
from .common import (ArgumentParser, add_input_args, add_model_args, add_overwrite_arg, add_quiet_arg, devices,
                     models_of, progress, run, source_type, warn_memory)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Decode an SEVC bitstream")
    add_input_args(parser, required=False)
    add_model_args(parser)
    parser.add_argument("-b", "--bin_path", type=str, required=True, help="a sevc file or an official stream folder")
    parser.add_argument("-o", "--output_path", type=str, required=True, help="output folder")
    parser.add_argument("--skim", action="store_true", help="decode only the base layer (4x-downsampled video)")
    parser.add_argument("--yuv", action="store_true", help="also write raw YUV 4:2:0 files (full.yuv, skim.yuv)")
    add_overwrite_arg(parser)
    add_quiet_arg(parser)
    parser.set_defaults(refresh_interval=None)
    return parser.parse_args(argv)


def _sources(args: argparse.Namespace, header: StreamHeader) -> Optional[Iterator[torch.Tensor]]:
    """The frames the stream was encoded from (-i), to report PSNR; None without -i."""
    if not args.input_path:
        return None
    return iter(read_frames(args.input_path, source_type(args), header.width, header.height, header.frame_count,
                            args.yuv_matrix, args.yuv_range))


def _open(args: argparse.Namespace) -> Stream:
    """The stream -b names. --refresh_interval is for official streams (a sevc header records it)."""
    stream = open_stream(args.bin_path, skim=args.skim,
                         refresh_interval=args.refresh_interval or DEFAULT_REFRESH_INTERVAL)
    if stream.kind == "sevc" and args.refresh_interval not in (None, stream.header.refresh_interval):
        raise SevcError(f"{args.bin_path} records refresh interval {stream.header.refresh_interval}; "
                        "--refresh_interval applies to official streams only, drop it")
    return stream


def _written(header: StreamHeader, skim: bool) -> str:
    """'full 176x144 and skim 44x36 frames' (the sizes decoding writes)."""
    sizes = {"full": (header.width, header.height), "skim": (header.width // 4, header.height // 4)}
    return " and ".join(f"{layer} {sizes[layer][0]}x{sizes[layer][1]}" for layer in decoded_layers(header, skim))


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    inputs = [args.bin_path, *([args.input_path] if args.input_path else [])]
    check_folder(args.output_path, DECODED, args.overwrite, inputs)
    stream = _open(args)
    header = stream.header
    sources = _sources(args, header)
    device = devices(args.cuda)[0]
    warn_memory(header.width, header.height, header.numerics, device)
    deterministic(thread_count(args.threads, header.numerics))
    models = models_of(args, device)
    yuv = (args.yuv_matrix, args.yuv_range) if args.yuv else None
    pixels = header.width * header.height
    psnrs: List[float] = []
    with memory.guard(header.width, header.height, header.numerics, device), \
            progress(header.frame_count, "frame", args.quiet) as bar:
        for frame, size in decode_to_folder(models, stream, args.output_path, args.skim, yuv, args.overwrite,
                                            inputs):
            status = "" if args.skim else f"{size * 8 / pixels:.4f} bpp"
            if sources is not None and frame.full is not None:
                psnrs.append(float(psnr(frame.full, next(sources).to(models.device))))
                status += f" {psnrs[-1]:.2f} dB"
            bar.set_postfix_str(status)
            bar.update()
    quality = f", {sum(psnrs) / len(psnrs):.2f} dB PSNR" if psnrs else ""
    print(f"decoded {header.frame_count} frames ({stream.kind} stream, {describe(header.numerics, header.precision)})"
          f"{quality}: {_written(header, args.skim)} frames -> {Path(args.output_path)}")
    return 0


def entry() -> int:
    return run(main)
