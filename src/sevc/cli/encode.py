"""encoder.py: encode a PNG folder or raw YUV file into an SEVC bitstream.

`--format sevc` (default) writes one file, the scalable sevc container (see `sevc.codec.bitstream`),
by default in integer numerics (it decodes bit-exactly on any machine; `--numerics portable` is the
same in float64, `--numerics float` keeps the published arithmetic, and `--precision bf16|fp16` runs it in mixed precision, which the stream
records); `--format official` the published folder layout (headers.bin, 0.bin, ...), always in
float numerics at fp32.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import List, Optional, Tuple

from .. import memory
from ..codec.bitstream import StreamHeader
from ..codec.files import FORMATS, FrameStats, check_stream_path, encode_file, stream_size
from ..errors import SevcError
from ..io.frames import available_frames, read_frames
from ..limits import MAX_FRAMES, check_frame_size
from ..models.rate import FINE_LEVELS
from ..numerics import Numerics, Precision, describe
from ..runtime import deterministic, thread_count
from .common import (INT32, ArgumentParser, add_input_args, add_model_args, add_overwrite_arg, add_quiet_arg, devices,
                     int_in, models_of, progress, run, source_type, str2bool, warn_memory)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Encode a video with SEVC")
    add_input_args(parser, required=True)
    add_model_args(parser)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("-q", "--qp", type=int_in(0, FINE_LEVELS - 1), required=True,
                        help="q level, 0 (lowest rate) .. 63")
    parser.add_argument("-f", "--frames", type=int, default=-1, help="frames to encode (-1: all)")
    parser.add_argument("--ip", type=int_in(*INT32), default=-1, help="intra period (-1: only the first frame)")
    parser.add_argument("--fast", type=str2bool, default=False, help="base layer only (4x-downsampled video)")
    parser.add_argument("-b", "--bin_path", type=str, help="output: a file for sevc (default out.sevc), "
                                                            "a folder for official (default out_bin)")
    parser.add_argument("--format", choices=FORMATS, default="sevc", help="bitstream format")
    parser.add_argument("--numerics", choices=[str(mode) for mode in Numerics],
                        help="arithmetic: integer (decodes bit-exactly on any CPU or GPU, at the speed of float; "
                             "the sevc default), portable (the same in float64) or float (the published models'; "
                             "the only one of --format official)")
    parser.add_argument("--precision", choices=[str(p) for p in Precision], default="fp32",
                        help="float numerics only: fp32 (the published arithmetic) or bf16 / fp16 mixed precision "
                             "(faster on GPUs; the decoder follows the stream); implies --numerics float")
    add_overwrite_arg(parser)
    add_quiet_arg(parser)
    return parser.parse_args(argv)


def _frame_count(args: argparse.Namespace) -> int:
    """Validate the arguments; the number of frames to encode."""
    check_frame_size(args.width, args.height)
    if args.frames == 0 or args.frames < -1 or args.frames > MAX_FRAMES:
        raise SevcError(f"-f/--frames must be in 1..{MAX_FRAMES} or -1 (all), got {args.frames}")
    available = available_frames(args.input_path, source_type(args), args.width, args.height)
    if args.frames > available:
        raise SevcError(f"{args.input_path} holds {available} frames, {args.frames} were asked for")
    if available == 0:
        raise SevcError(f"{args.input_path} holds no frames")
    return min(available, MAX_FRAMES) if args.frames == -1 else args.frames


def arithmetic_of(args: argparse.Namespace) -> Tuple[Numerics, Precision]:
    """The numerics mode and precision to encode in: --numerics, else integer for sevc streams at
    fp32 and float otherwise (official streams, or a mixed --precision)."""
    precision = Precision.named(args.precision)
    if args.format == "official":
        if args.numerics not in (None, "float") or precision is not Precision.FP32:
            raise SevcError("--format official records no numerics mode or precision and is always float, fp32; "
                            "drop --numerics / --precision or use --format sevc")
        return Numerics.FLOAT, precision
    mode = Numerics.named(args.numerics or ("integer" if precision is Precision.FP32 else "float"))
    if mode.portable and precision is not Precision.FP32:
        raise SevcError(f"--numerics {mode} has its own arithmetic: --precision applies to float numerics")
    return mode, precision


def summary(stats: List[FrameStats], pixels: int, path: str | os.PathLike) -> str:
    """'N bytes (P in frame payloads), B bpp[, Q dB PSNR]' of the stream written at `path`: its
    size and bpp count everything written (headers, packet lengths, checksums)."""
    total = stream_size(path)
    psnrs = [s.psnr for s in stats if s.psnr is not None]
    quality = f", {sum(psnrs) / len(psnrs):.2f} dB PSNR" if psnrs else ""
    return (f"{total} bytes ({sum(s.bytes for s in stats)} in frame payloads), "
            f"{total * 8 / (pixels * len(stats)):.4f} bpp{quality}")


def frame_status(stats: FrameStats, pixels: int) -> str:
    """'I 0.1234 bpp 34.56 dB' of one frame."""
    quality = "" if stats.psnr is None else f" {stats.psnr:.2f} dB"
    return f"{stats.frame_type} {stats.bytes * 8 / pixels:.4f} bpp{quality}"


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    frame_count = _frame_count(args)
    mode, precision = arithmetic_of(args)
    bin_path = Path(args.bin_path or ("out_bin" if args.format == "official" else "out.sevc"))
    check_stream_path(bin_path, args.format, args.overwrite, [args.input_path])
    device = devices(args.cuda)[0]
    warn_memory(args.width, args.height, mode, device)
    deterministic(thread_count(args.threads, mode))
    models = models_of(args, device)
    header = StreamHeader(args.width, args.height, args.qp, args.ip, args.refresh_interval, args.fast, frame_count,
                          models.weights_id, mode, precision)
    sources = read_frames(args.input_path, source_type(args), args.width, args.height, frame_count,
                          args.yuv_matrix, args.yuv_range)
    pixels = args.width * args.height
    stats: List[FrameStats] = []
    with memory.guard(args.width, args.height, mode, device), progress(frame_count, "frame", args.quiet) as bar:
        for frame in encode_file(models, sources, header, bin_path, args.format, args.overwrite, [args.input_path]):
            stats.append(frame)
            bar.set_postfix_str(frame_status(frame, pixels))
            bar.update()
    print(f"encoded {frame_count} frames of {args.width}x{args.height} at q {args.qp}, {describe(mode, precision)}"
          f"{' (fast: base layer only)' if args.fast else ''}: {summary(stats, pixels, bin_path)} -> {bin_path}")
    return 0


def entry() -> int:
    return run(main)
