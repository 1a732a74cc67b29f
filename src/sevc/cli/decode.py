"""decoder.py: decode an SEVC bitstream (sevc container or the published folder layout).

Writes `OUT/full/im00001.png, ...` (full resolution) and `OUT/skim/im00001.png, ...` (the base
layer's 4x-downsampled video), and with `--yuv` also `OUT/full.yuv` / `OUT/skim.yuv`.
`--skim` decodes the base layer only: enhancement packets of a sevc stream are not even read.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import torch
from tqdm import tqdm

from ..bitstream import Frame, StreamHeader, open_stream
from ..checkpoint import weights_id
from ..errors import CheckpointError
from ..frames import read_frames, rgb_to_yuv420, write_png, yuv420_frame_bytes
from ..intra import IntraNoAR
from ..metrics import psnr
from ..models import load_models
from ..outputs import Layout, atomic_dir, check_folder_path
from ..sevc_model import SEVC
from ..video import VideoCodec
from .common import (ArgumentParser, add_input_args, add_model_args, add_overwrite_arg, check_model_args,
                     deterministic, devices, run, source_type)

PICTURES = Layout(files=(r"im[0-9]{5,}\.png",))
DECODED_LAYOUT = Layout(files=(r"(full|skim)\.yuv",), folders={"full": PICTURES, "skim": PICTURES})


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


def decode_video(i_frame: IntraNoAR, p_frame: SEVC, bin_path: str | os.PathLike, out_path: str | os.PathLike,
                 skim: bool = False, yuv: Optional[Tuple[str, str]] = None, refresh_interval: int = 32,
                 sources: Optional[Callable[[StreamHeader], Iterable[torch.Tensor]]] = None,
                 overwrite: bool = False) -> Tuple[StreamHeader, str, List[float]]:
    """Decode the stream at `bin_path` into `out_path` (written atomically; a folder holding files
    sevc did not write is used only with `overwrite`, and then only sevc's files are replaced):
    full/ and skim/ PNGs, and with yuv=(matrix, range) full.yuv / skim.yuv. skim: base layer only.
    sources: given the stream header, the input frames, to report PSNR. Returns the header, the
    stream kind and the per-frame PSNRs."""
    stream = open_stream(bin_path, skip_enhancement=skim, refresh_interval=refresh_interval)
    header, kind = stream.header, stream.kind
    if yuv:
        yuv420_frame_bytes(header.width, header.height)
        yuv420_frame_bytes(header.width // 4, header.height // 4)
    if kind == "sevc":
        own_id = weights_id(i_frame, p_frame)
        if header.weights_id != own_id:
            raise CheckpointError("the stream was encoded with other weights than these checkpoints "
                                  f"(stream {header.weights_id.hex()}, checkpoints {own_id.hex()})")
    device = next(i_frame.parameters()).device
    codec = VideoCodec(i_frame, p_frame, header.intra_period, header.refresh_interval)
    sizes: List[int] = []
    decoded = codec.decode(_sized(stream.frames(), sizes), header.height, header.width, header.q_index, header.fast,
                           skim)
    sources = iter(sources(header)) if sources is not None else None
    layers = ["skim"] if header.fast or skim else ["full", "skim"]
    pixels = header.width * header.height
    psnrs = []
    with atomic_dir(out_path, DECODED_LAYOUT, overwrite) as out, \
            tqdm(total=header.frame_count, unit="frame", file=sys.stderr) as bar:
        for layer in layers:
            (out / layer).mkdir()
        for index, frame in enumerate(decoded):
            pictures = {"full": frame.full, "skim": frame.skim}
            for layer in layers:
                write_png(pictures[layer], out / layer / f"im{index + 1:05d}.png")
                if yuv:
                    with open(out / f"{layer}.yuv", "ab") as f:
                        f.write(rgb_to_yuv420(pictures[layer], *yuv))
            status = "" if skim else f"{sizes[index] * 8 / pixels:.4f} bpp"
            if sources is not None and frame.full is not None:
                psnrs.append(psnr(frame.full, next(sources).to(device)))
                status += f" {psnrs[-1]:.2f} dB"
            bar.set_postfix_str(status)
            bar.update()
    return header, kind, psnrs


def _sized(frames: Iterator[Frame], sizes: List[int]) -> Iterator[Frame]:
    """`frames`, appending each frame's size in bytes to `sizes` as it is read."""
    for payloads in frames:
        sizes.append(sum(len(p) for p in payloads))
        yield payloads


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    check_model_args(args)
    check_folder_path(args.output_path, DECODED_LAYOUT, args.overwrite)
    deterministic()
    device = devices(args.cuda)[0]
    i_frame, p_frame = load_models(args.i_frame_model_path, args.p_frame_model_path, device, args.ec_thread,
                                   args.stream_part_i, args.stream_part_p)

    def input_frames(header: StreamHeader):
        return read_frames(args.input_path, source_type(args), header.width, header.height, header.frame_count,
                           args.yuv_matrix, args.yuv_range)

    yuv = (args.yuv_matrix, args.yuv_range) if args.yuv else None
    header, kind, psnrs = decode_video(i_frame, p_frame, args.bin_path, args.output_path, args.skim, yuv,
                                       args.refresh_interval, input_frames if args.input_path else None,
                                       args.overwrite)
    layers = "skim" if header.fast or args.skim else "full and skim"
    quality = f", {sum(psnrs) / len(psnrs):.2f} dB PSNR" if psnrs else ""
    print(f"decoded {header.frame_count} frames ({kind} stream, {layers}) of {header.width}x{header.height}"
          f"{quality} -> {Path(args.output_path)}")
    return 0


def entry() -> int:
    return run(main)
