"""encoder.py: encode a PNG folder or raw YUV file into an SEVC bitstream.

`--format sevc` (default) writes one file, the scalable sevc container (see `sevc.bitstream`);
`--format official` the published folder layout (headers.bin, 0.bin, 1.bin, ...).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import torch
from tqdm import tqdm

from ..bitstream import MAGIC, OfficialWriter, SevcWriter, StreamHeader
from ..checkpoint import weights_id
from ..errors import SevcError
from ..frames import SourceFrames, available_frames, read_frames
from ..intra import IntraNoAR
from ..limits import MAX_FRAMES, check_frame_size
from ..metrics import psnr
from ..models import load_models
from ..outputs import Layout, atomic_dir, atomic_file, check_file_path, check_folder_path, starts_with
from ..quantization import FINE_LEVELS
from ..sevc_model import SEVC
from ..video import VideoCodec
from .common import (ArgumentParser, add_input_args, add_model_args, add_overwrite_arg, check_model_args,
                     deterministic, devices, run, source_type, str2bool)

FORMATS = ("sevc", "official")
OFFICIAL_LAYOUT = Layout(files=(r"headers\.bin", r"(0|[1-9][0-9]*)\.bin"))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Encode a video with SEVC")
    add_input_args(parser, required=True)
    add_model_args(parser)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("-q", "--qp", type=int, required=True, help="q level, 0 (lowest rate) .. 63")
    parser.add_argument("-f", "--frames", type=int, default=-1, help="frames to encode (-1: all)")
    parser.add_argument("--ip", type=int, default=-1, help="intra period (-1: only the first frame)")
    parser.add_argument("--fast", type=str2bool, default=False, help="base layer only (4x-downsampled video)")
    parser.add_argument("-b", "--bin_path", type=str, help="output: a file for sevc (default out.sevc), "
                                                            "a folder for official (default out_bin)")
    parser.add_argument("--format", choices=FORMATS, default="sevc", help="bitstream format")
    add_overwrite_arg(parser)
    return parser.parse_args(argv)


def _check(args: argparse.Namespace) -> int:
    """Validate the arguments; the number of frames to encode."""
    check_model_args(args)
    check_frame_size(args.width, args.height)
    if not 0 <= args.qp < FINE_LEVELS:
        raise SevcError(f"-q/--qp must be in 0..{FINE_LEVELS - 1}, got {args.qp}")
    if args.frames == 0 or args.frames < -1 or args.frames > MAX_FRAMES:
        raise SevcError(f"-f/--frames must be in 1..{MAX_FRAMES} or -1 (all), got {args.frames}")
    available = available_frames(args.input_path, source_type(args), args.width, args.height)
    if args.frames > available:
        raise SevcError(f"{args.input_path} holds {available} frames, {args.frames} were asked for")
    if available == 0:
        raise SevcError(f"{args.input_path} holds no frames")
    return min(available, MAX_FRAMES) if args.frames == -1 else args.frames


@dataclass
class FrameStats:
    """What the encoder reports per frame: I or P, coded bytes, PSNR of the full reconstruction (None if fast)."""

    frame_type: str
    bytes: int
    psnr: Optional[float]


def encode_video(i_frame: IntraNoAR, p_frame: SEVC, sources: Iterable[torch.Tensor], header: StreamHeader,
                 bin_path: Path, official: bool = False, overwrite: bool = False,
                 inputs: Sequence[str] = ()) -> List[FrameStats]:
    """Encode `header.frame_count` frames [1, 3, H, W] in [0, 1] as `header` says into `bin_path`
    (written atomically; an existing output sevc did not write is replaced only with `overwrite`,
    `inputs` never), with a progress bar; per-frame statistics."""
    device = next(i_frame.parameters()).device
    codec = VideoCodec(i_frame, p_frame, header.intra_period, header.refresh_interval)
    frames = SourceFrames(sources, device)
    stats: List[FrameStats] = []
    pixels = header.width * header.height

    def coded(bar):
        for frame in codec.encode(frames, header.q_index, header.fast):
            quality = None if frame.full is None else psnr(frame.full, frames.current)
            stats.append(FrameStats("I" if frame.is_intra else "P", sum(len(p) for p in frame.payloads), quality))
            bar.set_postfix_str(f"{stats[-1].frame_type} {stats[-1].bytes * 8 / pixels:.4f} bpp"
                                + ("" if quality is None else f" {quality:.2f} dB"))
            bar.update()
            yield frame.payloads

    with tqdm(total=header.frame_count, unit="frame", file=sys.stderr) as bar:
        if official:
            with atomic_dir(bin_path, OFFICIAL_LAYOUT, overwrite) as folder:
                _write(OfficialWriter(folder, header), coded(bar))
        else:
            with atomic_file(bin_path, starts_with(MAGIC), overwrite, inputs) as path, open(path, "wb") as file:
                _write(SevcWriter(file, header), coded(bar))
    return stats


def _write(writer, frames: Iterable[List[bytes]]) -> None:
    for payloads in frames:
        writer.write_frame(payloads)
    writer.close()


def summary(stats: List[FrameStats], pixels: int) -> str:
    """'N bytes, B bpp[, P dB PSNR]' over the frames."""
    total = sum(s.bytes for s in stats)
    psnrs = [s.psnr for s in stats if s.psnr is not None]
    quality = f", {sum(psnrs) / len(psnrs):.2f} dB PSNR" if psnrs else ""
    return f"{total} bytes, {total * 8 / (pixels * len(stats)):.4f} bpp{quality}"


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    frame_count = _check(args)
    official = args.format == "official"
    bin_path = Path(args.bin_path or ("out_bin" if official else "out.sevc"))
    if official:
        check_folder_path(bin_path, OFFICIAL_LAYOUT, args.overwrite)
    else:
        check_file_path(bin_path, starts_with(MAGIC), args.overwrite, [args.input_path])
    deterministic()
    device = devices(args.cuda)[0]
    i_frame, p_frame = load_models(args.i_frame_model_path, args.p_frame_model_path, device, args.ec_thread,
                                   args.stream_part_i, args.stream_part_p)
    header = StreamHeader(args.width, args.height, args.qp, args.ip, args.refresh_interval, args.fast, frame_count,
                          weights_id(i_frame, p_frame))
    sources = read_frames(args.input_path, source_type(args), args.width, args.height, frame_count,
                          args.yuv_matrix, args.yuv_range)
    stats = encode_video(i_frame, p_frame, sources, header, bin_path, official, args.overwrite, [args.input_path])
    print(f"encoded {frame_count} frames of {args.width}x{args.height} at q {args.qp}"
          f"{' (fast: base layer only)' if args.fast else ''}: {summary(stats, args.width * args.height)} -> {bin_path}")
    return 0


def entry() -> int:
    return run(main)
