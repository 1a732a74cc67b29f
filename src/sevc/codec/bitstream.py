"""SEVC bitstream files: sevc's one-file scalable container and the published folder layout.

**sevc container, version 2** (all integers big-endian)::

    header   magic "SEVC" | version u8 | flags u8 (bit 0: fast, base layer only; bits 1-2: precision)
             | numerics u8 | width u32 | height u32 | q_index u8 (0..63)
             | intra_period i32 (<= 0: first frame only)
             | refresh_interval u32 | frame_count u32 | weights_id 8 bytes | crc32 u32 (of the header)
    packets  type u8 (1 intra, 2 base layer, 3 enhancement layer) | length u32 | payload | crc32 u32

An I-frame is one intra packet; a P-frame a base packet followed, unless the stream is fast, by
an enhancement packet. A packet's CRC-32 covers its type, length and payload and continues from
the CRC of the packet before it (the first packet's from the header's): a packet is valid only
after its own header and in its own place. `numerics` names the arithmetic the stream was coded
with (`sevc.numerics.Numerics`: 0 float, the published models' arithmetic; 1 portable and 2
integer, the same bits on every machine) and `precision` the precision of float numerics
(`sevc.numerics.Precision`: 0 fp32, 1 bf16, 2 fp16 mixed precision; always 0 in the portable
modes); a decoder refuses a mode,
a precision or a flag it does not know. `weights_id` identifies the weights (see
`sevc.weights.checkpoint.weights_id`); a decoder with other weights refuses the stream. Frame
sizes and counts are limited (`sevc.limits`) and checked before anything is decoded; frames are
read one at a time, and skim decoding seeks past enhancement payloads without reading them. A
payload may not be longer than a frame of the header's size codes to (`sevc.limits.max_payload_bytes`).

**official layout** (what the published encoder.py writes): a folder with `headers.bin`
(intra_period i32, height u32, width u32, q_index u32, fast u32) and one file `N.bin` per frame
`N = 0, 1, ...`: an I-frame or fast P-frame is `length u32 | payload`, a full P-frame two of them
(base layer, enhancement layer). It has no checksums, no frame count (the frames are the `N.bin`
files, which must be numbered without gaps) and no numerics mode: it is always float. Every file
is checked to be a regular file of at most the size its frame may have before anything is decoded.
"""
from __future__ import annotations

import os
import re
import struct
import sys
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO, Iterator, List, Sequence, Tuple

from ..errors import BitstreamError
from ..io.reading import check_regular, open_regular, read_bounded
from ..limits import LimitError, check_frame_count, check_frame_size, max_payload_bytes
from ..models.rate import FINE_LEVELS, Rate
from ..numerics import Numerics, Precision
from .schedule import DEFAULT_REFRESH_INTERVAL, FrameSchedule

MAGIC = b"SEVC"
VERSION = 2
_HEADER = struct.Struct(">4sBBBIIBiII8s")
_CRC = struct.Struct(">I")
_PACKET = struct.Struct(">BI")
_OFFICIAL_HEADER = struct.Struct(">iIIII")
_LENGTH = struct.Struct(">I")
OFFICIAL_HEADER_FILE = "headers.bin"
OFFICIAL_FRAME = re.compile(r"(0|[1-9][0-9]*)\.bin")
_FAST = 1
_PRECISION_SHIFT = 1
_PRECISION_BITS = 0b110


class Packet(IntEnum):
    INTRA = 1
    BASE = 2
    ENHANCEMENT = 3

    @property
    def label(self) -> str:
        return {Packet.INTRA: "an intra", Packet.BASE: "a base-layer",
                Packet.ENHANCEMENT: "an enhancement-layer"}[self]


@dataclass(frozen=True)
class StreamHeader:
    """What a decoder needs besides the payloads; immutable, so `validate()` checks the header as
    it is used. numerics and precision are members of their enums; a value neither knows (read
    from a stream) stays an int, for `validate()` to report."""

    width: int
    height: int
    q_index: int
    intra_period: int = -1
    refresh_interval: int = DEFAULT_REFRESH_INTERVAL
    fast: bool = False
    frame_count: int = 1
    weights_id: bytes = bytes(8)
    numerics: Numerics = Numerics.FLOAT
    precision: Precision = Precision.FP32

    def __post_init__(self) -> None:
        for name, kind in (("numerics", Numerics), ("precision", Precision)):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                pass

    @property
    def schedule(self) -> FrameSchedule:
        return FrameSchedule(self.intra_period, self.refresh_interval)

    @property
    def rate(self) -> Rate:
        return Rate.level(self.q_index)

    def frame_packets(self, index: int) -> Tuple[Packet, ...]:
        """The packet types frame `index` consists of."""
        if self.schedule.is_intra(index):
            return (Packet.INTRA,)
        return (Packet.BASE,) if self.fast else (Packet.BASE, Packet.ENHANCEMENT)

    def packet_count(self) -> int:
        """How many packets the frames of the stream consist of."""
        intra = 1 + ((self.frame_count - 1) // self.intra_period if self.intra_period > 0 else 0)
        return intra + (self.frame_count - intra) * (1 if self.fast else 2)

    def validate(self) -> None:
        """Raise BitstreamError unless every field is one sevc can decode."""
        try:
            check_frame_size(self.width, self.height)
            check_frame_count(self.frame_count)
        except LimitError as exc:
            raise BitstreamError(f"invalid stream header: {exc}") from None
        if not 0 <= self.q_index < FINE_LEVELS:
            raise BitstreamError(f"invalid stream header: q index {self.q_index} is not in 0..{FINE_LEVELS - 1}")
        if self.refresh_interval <= 0:
            raise BitstreamError(f"invalid stream header: refresh interval {self.refresh_interval}")
        if not isinstance(self.numerics, Numerics):
            known = ", ".join(f"{mode.value} ({mode})" for mode in Numerics)
            raise BitstreamError(f"the stream uses numerics mode {self.numerics}, which this decoder does not know "
                                 f"(it knows {known})")
        if not isinstance(self.precision, Precision):
            raise BitstreamError(f"the stream uses precision {self.precision}, which this decoder does not know")
        if self.numerics.portable and self.precision != Precision.FP32:
            raise BitstreamError("invalid stream header: a portable stream with a float precision")


Frame = List[bytes]  # a frame's payloads: [intra] or [base] or [base, enhancement]


def _crc(data: bytes, previous: int = 0) -> int:
    return zlib.crc32(data, previous)


def _pack_header(header: StreamHeader) -> bytes:
    flags = (_FAST if header.fast else 0) | header.precision << _PRECISION_SHIFT
    data = _HEADER.pack(MAGIC, VERSION, flags, header.numerics, header.width, header.height,
                        header.q_index, header.intra_period, header.refresh_interval, header.frame_count,
                        header.weights_id)
    return data + _CRC.pack(_crc(data))


class SevcWriter:
    """Writes a sevc container to an open binary file, frame by frame; `close()` checks that
    exactly `header.frame_count` frames were written."""

    def __init__(self, file: BinaryIO, header: StreamHeader):
        header.validate()
        self.file = file
        self.header = header
        self.frame_count = 0
        data = _pack_header(header)
        self._chain = _CRC.unpack(data[-_CRC.size:])[0]
        file.write(data)

    def write_frame(self, payloads: Sequence[bytes]) -> None:
        kinds = self.header.frame_packets(self.frame_count)
        if len(payloads) != len(kinds):
            raise ValueError(f"frame {self.frame_count} needs {len(kinds)} payloads, got {len(payloads)}")
        for kind, payload in zip(kinds, payloads):
            head = _PACKET.pack(kind, len(payload))
            self._chain = _crc(payload, _crc(head, self._chain))
            self.file.write(head + payload + _CRC.pack(self._chain))
        self.frame_count += 1

    def close(self) -> None:
        if self.frame_count != self.header.frame_count:
            raise ValueError(f"the header announces {self.header.frame_count} frames, {self.frame_count} were written")


class OfficialWriter:
    """Writes the published folder layout into an existing folder, frame by frame."""

    def __init__(self, folder: str | os.PathLike, header: StreamHeader):
        header.validate()
        if header.numerics is not Numerics.FLOAT or header.precision is not Precision.FP32:
            raise ValueError("the published layout records no numerics mode or precision: it is always float, fp32")
        self.folder = Path(folder)
        self.header = header
        self.frame_count = 0
        (self.folder / OFFICIAL_HEADER_FILE).write_bytes(
            _OFFICIAL_HEADER.pack(header.intra_period, header.height, header.width, header.q_index, int(header.fast)))

    def write_frame(self, payloads: Sequence[bytes]) -> None:
        data = b"".join(_LENGTH.pack(len(p)) + p for p in payloads)
        (self.folder / f"{self.frame_count}.bin").write_bytes(data)
        self.frame_count += 1

    def close(self) -> None:
        """Nothing to finish: every frame is a file of its own."""


def _read_exactly(file: BinaryIO, size: int, what: str) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise BitstreamError(f"stream is truncated (in {what})")
    return data


class Stream:
    """A stream opened for decoding: its header, its kind ('sevc' or 'official') and its frames,
    read one at a time by iterating `frames()` (each check happens as the frame is read)."""

    def __init__(self, header: StreamHeader, kind: str):
        self.header = header
        self.kind = kind

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError


class SevcStream(Stream):
    """A sevc container; skim: enhancement payloads are not read (returned empty), for skim decoding."""

    def __init__(self, path: Path, skim: bool = False):
        self.path = path
        self.skim = skim
        with self._open() as file:
            self.size = os.fstat(file.fileno()).st_size
            header, self._chain = self._read_header(file)
        super().__init__(header, "sevc")
        self._payload_limit = max_payload_bytes(header.width, header.height)
        smallest = _HEADER.size + _CRC.size + header.packet_count() * (_PACKET.size + _CRC.size)
        if smallest > self.size:
            raise BitstreamError(f"stream is truncated: its header announces {header.frame_count} frames, "
                                 f"which take at least {smallest} bytes, but the file has {self.size}")

    def _open(self):
        return open_regular(self.path, "sevc stream", BitstreamError, sys.maxsize)

    @staticmethod
    def _read_header(file: BinaryIO) -> Tuple[StreamHeader, int]:
        data = _read_exactly(file, _HEADER.size, "the header")
        magic, version, flags, numerics, width, height, q_index, intra_period, refresh, count, weights_id = \
            _HEADER.unpack(data)
        if magic != MAGIC:
            raise BitstreamError("not a sevc stream (bad magic)")
        if version != VERSION:
            raise BitstreamError(f"unsupported sevc stream version {version} (this decoder reads version {VERSION})")
        (crc,) = _CRC.unpack(_read_exactly(file, _CRC.size, "the header"))
        if crc != _crc(data):
            raise BitstreamError("stream header is corrupted (CRC mismatch)")
        if flags & ~(_FAST | _PRECISION_BITS):
            raise BitstreamError(f"unknown stream flags {flags:#x}")
        precision = (flags & _PRECISION_BITS) >> _PRECISION_SHIFT
        header = StreamHeader(width, height, q_index, intra_period, refresh, bool(flags & _FAST), count, weights_id,
                              numerics, precision)
        header.validate()
        return header, crc

    def frames(self) -> Iterator[Frame]:
        chain = self._chain
        with self._open() as file:
            file.seek(_HEADER.size + _CRC.size)
            for index in range(self.header.frame_count):
                frame = []
                for kind in self.header.frame_packets(index):
                    skip = self.skim and kind == Packet.ENHANCEMENT
                    payload, chain = self._read_packet(file, kind, index, chain, skip)
                    frame.append(payload)
                yield frame
            if file.read(1):
                raise BitstreamError(f"unexpected data after the last of {self.header.frame_count} frames")

    def _read_packet(self, file: BinaryIO, expected: Packet, index: int, chain: int, skip: bool) -> Tuple[bytes, int]:
        """The payload of the next packet, which must be of type `expected`, and the CRC chain after it."""
        head = _read_exactly(file, _PACKET.size, f"frame {index}")
        kind, length = _PACKET.unpack(head)
        if kind != expected:
            raise BitstreamError(f"frame {index}: expected {expected.label} packet, found type {kind}")
        if length > self._payload_limit:
            raise BitstreamError(f"frame {index}: {expected.label} packet announces {length} bytes, more than a "
                                 f"{self.header.width}x{self.header.height} frame codes to ({self._payload_limit})")
        if file.tell() + length + _CRC.size > self.size:
            raise BitstreamError(f"stream is truncated (in frame {index})")
        if skip:
            file.seek(length, os.SEEK_CUR)
            return b"", _CRC.unpack(_read_exactly(file, _CRC.size, f"frame {index}"))[0]
        payload = _read_exactly(file, length, f"frame {index}")
        (crc,) = _CRC.unpack(_read_exactly(file, _CRC.size, f"frame {index}"))
        if crc != _crc(payload, _crc(head, chain)):
            raise BitstreamError(f"frame {index}: {expected.label} packet is corrupted (CRC mismatch)")
        return payload, crc


class OfficialStream(Stream):
    """The published layout; its header does not record the refresh interval, so it is given."""

    def __init__(self, folder: Path, refresh_interval: int = DEFAULT_REFRESH_INTERVAL):
        self.folder = folder
        header_file = folder / OFFICIAL_HEADER_FILE
        data = read_bounded(header_file, "stream header", BitstreamError, _OFFICIAL_HEADER.size)
        if len(data) != _OFFICIAL_HEADER.size:
            raise BitstreamError(f"{header_file} has {len(data)} bytes, expected {_OFFICIAL_HEADER.size}")
        intra_period, height, width, q_index, fast = _OFFICIAL_HEADER.unpack(data)
        if fast not in (0, 1):
            raise BitstreamError(f"{header_file}: invalid fast flag {fast}")
        header = StreamHeader(width, height, q_index, intra_period, refresh_interval, bool(fast),
                              self._frame_count(folder))
        header.validate()
        super().__init__(header, "official")
        for index in range(header.frame_count):
            size = check_regular(folder / f"{index}.bin", "stream frame", BitstreamError).st_size
            if size > self._frame_limit(index):
                raise BitstreamError(f"{folder / f'{index}.bin'} has {size} bytes, more than a {width}x{height} "
                                     f"frame codes to ({self._frame_limit(index)})")

    @staticmethod
    def _frame_count(folder: Path) -> int:
        """How many frames 0.bin, 1.bin, ... the folder holds; a gap in the numbering is an error."""
        numbers = set()
        with os.scandir(folder) as entries:
            for entry in entries:
                match = OFFICIAL_FRAME.fullmatch(entry.name)
                if match:
                    numbers.add(int(match.group(1)))
        if not numbers:
            raise BitstreamError(f"{folder} holds no frame (0.bin)")
        missing = min(set(range(len(numbers))) - numbers, default=None)
        if missing is not None:
            raise BitstreamError(f"{folder} lacks frame {missing} ({missing}.bin) but holds {max(numbers)}.bin")
        return len(numbers)

    def _frame_limit(self, index: int) -> int:
        """The most bytes the file of frame `index` may have."""
        parts = len(self.header.frame_packets(index))
        return parts * (_LENGTH.size + max_payload_bytes(self.header.width, self.header.height))

    def frames(self) -> Iterator[Frame]:
        for index in range(self.header.frame_count):
            path = self.folder / f"{index}.bin"
            data = read_bounded(path, "stream frame", BitstreamError, self._frame_limit(index))
            yield self._parse_frame(path, data, len(self.header.frame_packets(index)))

    @staticmethod
    def _parse_frame(path: Path, data: bytes, parts: int) -> Frame:
        payloads, offset = [], 0
        for _ in range(parts):
            if offset + _LENGTH.size > len(data):
                raise BitstreamError(f"{path} is truncated")
            (length,) = _LENGTH.unpack_from(data, offset)
            offset += _LENGTH.size
            if offset + length > len(data):
                raise BitstreamError(f"{path} is truncated")
            payloads.append(data[offset:offset + length])
            offset += length
        if offset != len(data):
            raise BitstreamError(f"{path} has {len(data) - offset} unexpected trailing bytes")
        return payloads


def open_stream(path: str | os.PathLike, skim: bool = False,
                refresh_interval: int = DEFAULT_REFRESH_INTERVAL) -> Stream:
    """Open either format, detected from `path` (a sevc file or an official stream folder).

    skim: a sevc stream's enhancement payloads are not read (skim decoding); refresh_interval
    applies to official streams, whose header does not record it.
    """
    path = Path(path)
    if path.is_dir():
        if not os.path.lexists(path / OFFICIAL_HEADER_FILE):
            raise BitstreamError(f"{path} is a folder without {OFFICIAL_HEADER_FILE}: not an SEVC stream")
        return OfficialStream(path, refresh_interval)
    if not path.exists():
        raise BitstreamError(f"stream not found: {path}")
    if not path.is_file():
        raise BitstreamError(f"{path} is not a regular file: not an SEVC stream")
    return SevcStream(path, skim)


def is_sevc_stream(path: str | os.PathLike) -> bool:
    """Whether `path` is a sevc stream by its whole header: magic, version, CRC, every field one
    a decoder accepts, and a size that can hold the frames it announces."""
    try:
        SevcStream(Path(path))
    except (BitstreamError, OSError):
        return False
    return True
