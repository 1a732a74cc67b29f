"""The file codec: encode frames into a bitstream file (either format) and decode one into frames,
PNG folders and YUV files. What encoder.py, decoder.py, the demo and the benchmarks run.

Every output is written atomically and safely (`sevc.io.outputs`): complete or not at all, never
over what sevc did not write unless `overwrite` is given (and in a folder, never over it at all),
and never over an input of the run.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import CheckpointError
from ..psnr import psnr
from ..io.frames import rgb_to_yuv420, write_png, yuv420_frame_bytes
from ..io.outputs import OutputKind, atomic_dir, atomic_file, check_file, check_folder
from ..weights.models import Models
from .bitstream import Frame, OfficialWriter, SevcWriter, Stream, StreamHeader, is_sevc_stream
from .video import DecodedFrame, VideoCodec

FORMATS = ("sevc", "official")
OFFICIAL = OutputKind("an official stream", r"headers\.bin|[0-9]+\.bin")
DECODED = OutputKind("a decoded video", r"(full|skim)(/im[0-9]+\.png)?|(full|skim)\.yuv")
Writer = Union[SevcWriter, OfficialWriter]


@dataclass(frozen=True)
class FrameStats:
    """One coded frame: I or P, its size in bytes, the PSNR (dB) of its full reconstruction
    against the source (None in fast mode, or without a source)."""

    frame_type: str
    bytes: int
    psnr: Optional[float]


def check_stream_path(path: str | os.PathLike, fmt: str, overwrite: bool = False, inputs: Sequence[str] = ()) -> None:
    """Raise OutputError unless a stream of format `fmt` may be written at `path` (see `open_writer`)."""
    if fmt == "official":
        check_folder(path, OFFICIAL, overwrite, inputs)
    else:
        check_file(path, is_sevc_stream, overwrite, inputs)


@contextlib.contextmanager
def open_writer(path: str | os.PathLike, header: StreamHeader, fmt: str = "sevc", overwrite: bool = False,
                inputs: Sequence[str] = ()) -> Iterator[Writer]:
    """A writer of a stream in format `fmt` ('sevc': one file; 'official': the published folder
    layout) at `path`, written atomically when the block ends; `close()` it when all frames are in."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown bitstream format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "official":
        with atomic_dir(path, OFFICIAL, overwrite, inputs) as folder:
            yield OfficialWriter(folder, header)
    else:
        with atomic_file(path, is_sevc_stream, overwrite, inputs) as temporary, open(temporary, "wb") as file:
            yield SevcWriter(file, header)


def encode_file(models: Models, sources: Iterable[torch.Tensor], header: StreamHeader, path: str | os.PathLike,
                fmt: str = "sevc", overwrite: bool = False, inputs: Sequence[str] = ()) -> Iterator[FrameStats]:
    """Encode `header.frame_count` frames [1, 3, H, W] in [0, 1] as `header` says into a stream at
    `path` (see `open_writer`); yields each frame's statistics as it is written. The stream
    appears when the last frame is in."""
    codec = VideoCodec(*models, header.schedule, header.numerics, header.precision)
    with open_writer(path, header, fmt, overwrite, inputs) as writer:
        originals, frames = itertools.tee(x.to(models.device) for x in sources)
        for x, frame in zip(originals, codec.encode(frames, rate=header.rate, fast=header.fast)):
            writer.write_frame(frame.payloads)
            quality = None if frame.full is None else float(psnr(frame.full, x))
            yield FrameStats("I" if frame.intra else "P", sum(len(p) for p in frame.payloads), quality)
        writer.close()


def stream_size(path: str | os.PathLike) -> int:
    """Bytes of a written stream: the sevc file, or all files of an official stream folder."""
    path = Path(path)
    if path.is_dir():
        return sum(entry.stat().st_size for entry in path.iterdir() if re.fullmatch(OFFICIAL.reserved, entry.name))
    return path.stat().st_size


def decode_stream(models: Models, stream: Stream, skim: bool = False) -> Iterator[Tuple[DecodedFrame, int]]:
    """Decode an opened stream frame by frame: (decoded frame, its size in bytes). skim: the base
    layer only. A sevc stream made with other weights is refused before anything is decoded."""
    header = stream.header
    if stream.kind == "sevc" and header.weights_id != models.weights_id:
        raise CheckpointError("the stream was encoded with other weights than these checkpoints "
                              f"(stream {header.weights_id.hex()}, checkpoints {models.weights_id.hex()})")
    codec = VideoCodec(*models, header.schedule, header.numerics, header.precision)
    sizes: List[int] = []

    def payloads() -> Iterator[Frame]:
        for frame in stream.frames():
            sizes.append(sum(len(p) for p in frame))
            yield frame

    decoded = codec.decode(payloads(), header.height, header.width, rate=header.rate, fast=header.fast,
                           skim=skim)
    for index, frame in enumerate(decoded):
        yield frame, sizes[index]


class DecodedFolder:
    """Writes decoded frames into a folder: `full/` and `skim/` PNGs (im00001.png, ...) of the
    layers given, and with yuv=(matrix, range) also `full.yuv` / `skim.yuv` (8-bit 4:2:0)."""

    def __init__(self, folder: Path, layers: Sequence[str], yuv: Optional[Tuple[str, str]] = None):
        self.folder = folder
        self.layers = tuple(layers)
        self.yuv = yuv
        self.count = 0
        for layer in self.layers:
            (folder / layer).mkdir()

    def write(self, frame: DecodedFrame) -> None:
        self.count += 1
        pictures = {"full": frame.full, "skim": frame.skim}
        for layer in self.layers:
            write_png(pictures[layer], self.folder / layer / f"im{self.count:05d}.png")
            if self.yuv:
                with open(self.folder / f"{layer}.yuv", "ab") as file:
                    file.write(rgb_to_yuv420(pictures[layer], *self.yuv))


def decoded_layers(header: StreamHeader, skim: bool) -> Tuple[str, ...]:
    """The layers a decode writes: the skim video always, the full one unless only the base layer is decoded."""
    return ("skim",) if header.fast or skim else ("full", "skim")


def decode_to_folder(models: Models, stream: Stream, path: str | os.PathLike, skim: bool = False,
                     yuv: Optional[Tuple[str, str]] = None, overwrite: bool = False,
                     inputs: Sequence[str | os.PathLike] = ()) -> Iterator[Tuple[DecodedFrame, int]]:
    """Decode an opened stream into the folder `path` (see DecodedFolder), yielding each frame and
    its size in bytes as it is written. The folder's contents appear when the last frame is in;
    `inputs` (the stream, the source frames) are never written."""
    if yuv:
        yuv420_frame_bytes(stream.header.width, stream.header.height)
        yuv420_frame_bytes(stream.header.width // 4, stream.header.height // 4)
    with atomic_dir(path, DECODED, overwrite, inputs) as folder:
        output = DecodedFolder(folder, decoded_layers(stream.header, skim), yuv)
        for frame, size in decode_stream(models, stream, skim):
            output.write(frame)
            yield frame, size
