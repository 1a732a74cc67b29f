"""Standard-codec anchors (anchors.py): the sequences of a test configuration coded with x264,
x265, VVC (vvenc) or AV1 (libaom) through FFmpeg, low-delay, into test.py's records.

Each (sequence, QP) is one job. The source frames are read as test.py reads them; PNG frames are
converted to 8-bit YUV 4:2:0 with `sevc.io.frames.rgb_to_yuv420` (the configuration's matrix and
range; odd sizes padded to even by repeating the last column / row), raw YUV files are coded as
they are. The stream is decoded by FFmpeg, converted back with `yuv420_to_rgb` (the same matrix
and range; 10-bit output rounded to 8 bits), cropped, and PSNR / MS-SSIM are computed in RGB
against the source frames exactly as test.py does. Each frame's bits are the size of its packet
in the elementary stream (parameter sets included, the encoders' informational SEI removed).

Settings and their sources are listed in README.md ("Reproducing the tables").
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.schedule import FrameSchedule
from ..errors import AnchorError, ConfigError, FrameError
from ..io.frames import count_yuv420_frames, read_frames, rgb_to_yuv420, yuv420_frame_bytes, yuv420_to_rgb
from ..io.outputs import atomic_file
from ..io.reading import open_regular
from ..psnr import psnr
from . import ffmpeg
from .evaluation import ConfigSequence
from .metrics import msssim, sequence_record

Options = Callable[[int, int, str, int], List[str]]  # (qp, intra period, preset, threads) -> FFmpeg options


def _x264(qp: int, intra_period: int, preset: str, threads: int) -> List[str]:
    """x264, as the DCVC papers run it (veryslow, zerolatency), at a constant QP and without
    B-frames or scene-cut intra frames; its informational SEI (NAL type 6) removed."""
    return ["-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-qp", str(qp), "-g", str(intra_period),
            "-bf", "0", "-sc_threshold", "0", "-threads", str(threads), "-bsf:v", "filter_units=remove_types=6",
            "-f", "h264"]


def _x265(qp: int, intra_period: int, preset: str, threads: int) -> List[str]:
    """x265, as the DCVC papers run it (veryslow, zerolatency), at a constant QP, without
    B-frames, scene-cut intra frames or its informational SEI."""
    params = f"qp={qp}:keyint={intra_period}:bframes=0:scenecut=0:info=0:pools={threads}:log-level=error"
    return ["-c:v", "libx265", "-preset", preset, "-tune", "zerolatency", "-x265-params", params, "-f", "hevc"]


def _vvc(qp: int, intra_period: int, preset: str, threads: int) -> List[str]:
    """vvenc in its low-delay set-up (no picture reordering, GOP 8 with hierarchical QPs, like
    VTM's encoder_lowdelay_vtm.cfg), 10-bit internally, no perceptual QP adaptation and no
    look-ahead temporal filter."""
    params = f"DecodingRefreshType=none:PicReordering=0:GOPSize=8:IntraPeriod={intra_period}:MCTF=0:BIM=0"
    return ["-pix_fmt", "yuv420p10le", "-c:v", "libvvenc", "-preset", preset, "-qp", str(qp), "-qpa", "0",
            "-threads", str(threads), "-vvenc-params", params, "-f", "vvc"]


def _av1(qp: int, intra_period: int, preset: str, threads: int) -> List[str]:
    """libaom, the AV1 reference encoder, in constant-quality mode (cq-level `qp`) without
    look-ahead or alternative reference frames (low delay); `preset` is its cpu-used."""
    return ["-c:v", "libaom-av1", "-cpu-used", preset, "-crf", str(qp), "-b:v", "0", "-lag-in-frames", "0",
            "-auto-alt-ref", "0", "-g", str(intra_period), "-keyint_min", str(intra_period),
            "-threads", str(threads), "-row-mt", "0", "-f", "obu"]


@dataclass(frozen=True)
class AnchorCodec:
    """A standard codec as anchors.py runs it.

    encoder: FFmpeg's encoder; extension: of its elementary stream; decoded_format: the pixel
    format its decoder outputs; preset: the default --preset; qps: the default QPs of 4 rates (other
    --rate_num spread over their range); max_qp: the largest QP it takes; single_intra: the intra
    period that means "only the first frame" (None: the frame count); options: its FFmpeg options.
    """

    encoder: str
    extension: str
    decoded_format: str
    preset: str
    qps: Tuple[int, ...]
    max_qp: int
    options: Options
    single_intra: Optional[int] = None

    def intra_period(self, sequence: ConfigSequence) -> int:
        """The encoder's intra period for the sequence's `gop` (<= 0: only the first frame)."""
        if sequence.gop > 0:
            return sequence.gop
        return self.single_intra if self.single_intra is not None else sequence.frames



CTC_QPS = (22, 27, 32, 37)  # the QPs of the common test conditions of HEVC and VVC (and of DCVC's anchors)
CODECS: Dict[str, AnchorCodec] = {
    "x264": AnchorCodec("libx264", "264", "yuv420p", "veryslow", CTC_QPS, 51, _x264),
    "x265": AnchorCodec("libx265", "265", "yuv420p", "veryslow", CTC_QPS, 51, _x265),
    "vvc": AnchorCodec("libvvenc", "266", "yuv420p10le", "slower", CTC_QPS, 63, _vvc, single_intra=-1),
    "av1": AnchorCodec("libaom-av1", "obu", "yuv420p", "1", (32, 43, 55, 63), 63, _av1),
}


def anchor_qps(codec: AnchorCodec, rate_num: Optional[int] = None, qps: Optional[Sequence[int]] = None) -> List[int]:
    """The QPs of the rates: `qps` if given (`rate_num`, if given, must be their number), else the
    codec's default QPs for 4 rates (`rate_num` None or 4) and `rate_num` QPs spread evenly over
    their range otherwise."""
    if qps is None:
        rate_num = len(codec.qps) if rate_num is None else rate_num
        if rate_num < 2:
            raise ValueError(f"--rate_num must be at least 2, got {rate_num} (or give --qp)")
        spread = np.linspace(codec.qps[0], codec.qps[-1], num=rate_num)
        qps = list(codec.qps) if rate_num == len(codec.qps) else [int(math.floor(q + 0.5)) for q in spread]
        if len(set(qps)) < rate_num:
            raise ValueError(f"--rate_num {rate_num} is more rates than QPs {codec.qps[0]}..{codec.qps[-1]}; "
                             "give them with --qp")
    elif rate_num is not None and len(qps) != rate_num:
        raise ValueError(f"--qp has {len(qps)} values, --rate_num is {rate_num}")
    for qp in qps:
        if not 0 <= qp <= codec.max_qp:
            raise ValueError(f"QP {qp} is out of range 0..{codec.max_qp} for {codec.encoder}")
    return list(qps)


@dataclass(frozen=True)
class AnchorJob:
    """One sequence coded at one QP."""

    sequence: ConfigSequence
    rate_index: int
    qp: int

    @property
    def label(self) -> str:
        """The sequence and its QP, for progress output ('Beauty QP 32')."""
        return f"{self.sequence.name} QP {self.qp}"


@dataclass(frozen=True)
class Coder:
    """How the jobs are coded: the codec, its preset, encoder threads and the FFmpeg binary."""

    codec: AnchorCodec
    preset: str
    threads: int
    ffmpeg: str

    def options(self, job: AnchorJob) -> List[str]:
        """The FFmpeg output options that code `job`."""
        return self.codec.options(job.qp, self.codec.intra_period(job.sequence), self.preset, self.threads)


def check_sequence(sequence: ConfigSequence) -> None:
    """ConfigError unless the sequence can be coded in 4:2:0 (a raw YUV file of an odd size cannot:
    it is not 4:2:0; PNG frames of an odd size are padded)."""
    if sequence.src_type == "yuv420" and (sequence.width % 2 or sequence.height % 2):
        raise ConfigError(f"sequence {sequence.dataset}/{sequence.name} is {sequence.width}x{sequence.height}: a "
                          "YUV 4:2:0 file has an even width and height, so this cannot be its size")


def coded_size(sequence: ConfigSequence) -> Tuple[int, int]:
    """The size the encoder codes: the sequence's, padded to even for 4:2:0."""
    return sequence.width + sequence.width % 2, sequence.height + sequence.height % 2


def _padded(frame: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """`frame` [1, 3, h, w] extended to width x height by repeating its last column and row."""
    return F.pad(frame, (0, width - frame.shape[3], 0, height - frame.shape[2]), mode="replicate")


def write_source(sequence: ConfigSequence, path: Path) -> None:
    """The sequence's frames as the raw 8-bit YUV 4:2:0 file the encoder reads: a YUV source's
    own bytes, or PNG frames converted with the configuration's matrix and range."""
    if sequence.src_type == "yuv420":
        frame_bytes = yuv420_frame_bytes(sequence.width, sequence.height)
        available = count_yuv420_frames(sequence.source, sequence.width, sequence.height)
        if available < sequence.frames:
            raise FrameError(f"{sequence.source} holds {available} frames, {sequence.frames} were asked for")
        with open_regular(sequence.source, "YUV input", FrameError, sys.maxsize) as source, open(path, "wb") as target:
            for _ in range(sequence.frames):
                target.write(source.read(frame_bytes))
        return
    width, height = coded_size(sequence)
    with open(path, "wb") as target:
        for frame in _source_frames(sequence):
            target.write(rgb_to_yuv420(_padded(frame, width, height), sequence.yuv_matrix, sequence.yuv_range))


def _source_frames(sequence: ConfigSequence) -> Iterator[torch.Tensor]:
    """The source frames [1, 3, H, W] in [0, 1], read as test.py reads them."""
    return read_frames(sequence.source, sequence.src_type, sequence.width, sequence.height, sequence.frames,
                       sequence.yuv_matrix, sequence.yuv_range)


def decoded_frames(path: Path, sequence: ConfigSequence, pixel_format: str) -> Iterator[torch.Tensor]:
    """The decoded frames of the raw file `path` (yuv420p, or yuv420p10le rounded to 8 bits) as
    RGB [1, 3, H, W] in [0, 1]: converted with the sequence's matrix and range, cropped to its size."""
    width, height = coded_size(sequence)
    dtype = np.dtype(np.uint16 if pixel_format == "yuv420p10le" else np.uint8)
    luma, chroma = width * height, width * height // 4
    samples = luma + 2 * chroma
    frames = os.path.getsize(path) // (samples * dtype.itemsize)
    if frames != sequence.frames:
        raise AnchorError(f"the decoder returned {frames} frames of {sequence.dataset}/{sequence.name}, "
                          f"{sequence.frames} were coded")
    with open(path, "rb") as file:
        for _ in range(frames):
            frame = np.fromfile(file, dtype=dtype, count=samples)
            if dtype.itemsize == 2:
                frame = np.clip((frame.astype(np.int32) + 2) >> 2, 0, 255).astype(np.uint8)
            y = frame[:luma].reshape(height, width)
            u = frame[luma:luma + chroma].reshape(height // 2, width // 2)
            v = frame[luma + chroma:].reshape(height // 2, width // 2)
            rgb = yuv420_to_rgb(y, u, v, sequence.yuv_matrix, sequence.yuv_range)
            yield rgb[:, :, :sequence.height, :sequence.width]


def _check_frame_types(packets: List[ffmpeg.Packet], sequence: ConfigSequence, encoder: str) -> List[int]:
    """test.py's frame types (0 = I, 1 = P) of the schedule, checked against the coded packets."""
    if len(packets) != sequence.frames:
        raise AnchorError(f"{encoder} wrote {len(packets)} frames of {sequence.dataset}/{sequence.name}, "
                          f"{sequence.frames} were asked for")
    schedule = FrameSchedule(sequence.gop)
    types = [0 if schedule.is_intra(k) else 1 for k in range(sequence.frames)]
    for index, (packet, kind) in enumerate(zip(packets, types)):
        if packet.key != (kind == 0):
            expected = "an intra frame" if kind == 0 else "a P-frame"
            raise AnchorError(f"{encoder} did not code frame {index} of {sequence.dataset}/{sequence.name} as "
                              f"{expected} (intra period {sequence.gop})")
    return types


def code_sequence(job: AnchorJob, coder: Coder, keep: Optional[Path] = None) -> Dict[str, object]:
    """test.py's record of one job (see `sevc.eval.metrics.sequence_record`) plus its `qp` and
    `test_time` (seconds). `keep`: a file to write the coded elementary stream to (atomically;
    else it is discarded)."""
    sequence, codec = job.sequence, coder.codec
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="sevc-anchor-") as folder:
        source, stream, decoded = (Path(folder) / name for name in ("source.yuv", f"stream.{codec.extension}",
                                                                    "decoded.yuv"))
        write_source(sequence, source)
        ffmpeg.encode(coder.ffmpeg, source, *coded_size(sequence), sequence.frames, coder.options(job), stream,
                      codec.encoder)
        packets = ffmpeg.decode(coder.ffmpeg, stream, codec.decoded_format, decoded)
        types = _check_frame_types(packets, sequence, codec.encoder)
        psnrs, msssims = [], []
        for recon, x in zip(decoded_frames(decoded, sequence, codec.decoded_format), _source_frames(sequence)):
            psnrs.append(float(psnr(recon, x)))
            quality = msssim(recon, x)
            msssims.append(None if quality is None else float(quality))
        if keep is not None:
            with atomic_file(keep) as path:
                shutil.copyfile(stream, path)
    record = sequence_record(types, [8.0 * p.size for p in packets], psnrs, msssims,
                             sequence.width * sequence.height)
    record["qp"] = job.qp
    record["test_time"] = time.time() - start
    return record
