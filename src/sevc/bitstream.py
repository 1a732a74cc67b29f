"""SEVC bitstream files: sevc's one-file scalable container and the published folder layout.

**sevc container, version 1** (all integers big-endian)::

    header   magic "SEVC" | version u8 | flags u8 (bit 0: fast, base layer only)
             | width u32 | height u32 | q_index u8 (0..63) | intra_period i32 (<= 0: first frame only)
             | refresh_interval u32 | frame_count u32 | weights_id 8 bytes | crc32 u32 (of the header)
    packets  type u8 (1 intra, 2 base layer, 3 enhancement layer) | length u32 | payload
             | crc32 u32 (of type, length and payload)

An I-frame is one intra packet; a P-frame a base packet followed, unless the stream is fast, by
an enhancement packet. `weights_id` identifies the weights the stream was encoded with (see
`sevc.checkpoint.weights_id`); a decoder with other weights refuses the stream. Skim decoding
seeks past enhancement packets without reading them.

**official layout** (what the published encoder.py writes): a folder with `headers.bin`
(intra_period i32, height u32, width u32, q_index u32, fast u32) and one file `N.bin` per frame
`N = 0, 1, ...`: an I-frame or fast P-frame is `length u32 | payload`, a full P-frame two of them
(base layer, enhancement layer).
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO, List, Sequence, Tuple

from .errors import BitstreamError

MAGIC = b"SEVC"
VERSION = 1
_HEADER = struct.Struct(">4sBBIIBiII8s")
_CRC = struct.Struct(">I")
_PACKET = struct.Struct(">BI")
_OFFICIAL_HEADER = struct.Struct(">iIIII")
_LENGTH = struct.Struct(">I")
OFFICIAL_HEADER_FILE = "headers.bin"


class Packet(IntEnum):
    INTRA = 1
    BASE = 2
    ENHANCEMENT = 3


@dataclass
class StreamHeader:
    """What a decoder needs besides the payloads."""

    width: int
    height: int
    q_index: int
    intra_period: int = -1
    refresh_interval: int = 32
    fast: bool = False
    frame_count: int = 0
    weights_id: bytes = bytes(8)

    def is_intra(self, index: int) -> bool:
        return index == 0 or (self.intra_period > 0 and index % self.intra_period == 0)

    def frame_packets(self, index: int) -> Tuple[Packet, ...]:
        """The packet types frame `index` consists of."""
        if self.is_intra(index):
            return (Packet.INTRA,)
        return (Packet.BASE,) if self.fast else (Packet.BASE, Packet.ENHANCEMENT)


Frame = List[bytes]  # a frame's payloads: [intra] or [base] or [base, enhancement]


def _crc(*parts: bytes) -> int:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def _validate_header(header: StreamHeader) -> None:
    if not (0 < header.width < 2 ** 32 and 0 < header.height < 2 ** 32):
        raise BitstreamError(f"invalid frame size {header.width}x{header.height}")
    if not 0 <= header.q_index < 64:
        raise BitstreamError(f"invalid q index {header.q_index}")
    if header.refresh_interval <= 0:
        raise BitstreamError(f"invalid refresh interval {header.refresh_interval}")


class SevcWriter:
    """Writes a sevc container to an open binary file, frame by frame; `close()` completes the header."""

    def __init__(self, file: BinaryIO, header: StreamHeader):
        _validate_header(header)
        self.file = file
        self.header = header
        self.frame_count = 0
        self._write_header()

    def _write_header(self) -> None:
        h = self.header
        data = _HEADER.pack(MAGIC, VERSION, int(h.fast), h.width, h.height, h.q_index, h.intra_period,
                            h.refresh_interval, self.frame_count, h.weights_id)
        self.file.write(data + _CRC.pack(_crc(data)))

    def write_frame(self, payloads: Sequence[bytes]) -> None:
        kinds = self.header.frame_packets(self.frame_count)
        if len(payloads) != len(kinds):
            raise ValueError(f"frame {self.frame_count} needs {len(kinds)} payloads, got {len(payloads)}")
        for kind, payload in zip(kinds, payloads):
            head = _PACKET.pack(kind, len(payload))
            self.file.write(head + payload + _CRC.pack(_crc(head, payload)))
        self.frame_count += 1

    def close(self) -> None:
        end = self.file.tell()
        self.file.seek(0)
        self._write_header()
        self.file.seek(end)


def _read_exactly(file: BinaryIO, size: int, what: str) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise BitstreamError(f"stream is truncated (in {what})")
    return data


def _read_header(file: BinaryIO) -> StreamHeader:
    data = _read_exactly(file, _HEADER.size, "the header")
    magic, version, flags, width, height, q_index, intra_period, refresh, count, weights_id = _HEADER.unpack(data)
    if magic != MAGIC:
        raise BitstreamError("not a sevc stream (bad magic)")
    if version != VERSION:
        raise BitstreamError(f"unsupported sevc stream version {version} (this decoder reads version {VERSION})")
    if _CRC.unpack(_read_exactly(file, _CRC.size, "the header"))[0] != _crc(data):
        raise BitstreamError("stream header is corrupted (CRC mismatch)")
    if flags & ~1:
        raise BitstreamError(f"unknown stream flags {flags:#x}")
    header = StreamHeader(width, height, q_index, intra_period, refresh, bool(flags & 1), count, weights_id)
    _validate_header(header)
    return header


def _read_packet(file: BinaryIO, size: int, expected: Packet, index: int, skip: bool) -> bytes:
    """The payload of the next packet (which must be of type `expected`) of a `size`-byte file."""
    head = _read_exactly(file, _PACKET.size, f"frame {index}")
    kind, length = _PACKET.unpack(head)
    if kind != expected:
        raise BitstreamError(f"frame {index}: expected a {expected.name.lower()} packet, found type {kind}")
    start = file.tell()
    if start + length + _CRC.size > size:
        raise BitstreamError(f"stream is truncated (in frame {index})")
    if skip:
        file.seek(length + _CRC.size, os.SEEK_CUR)
        return b""
    payload = _read_exactly(file, length, f"frame {index}")
    if _CRC.unpack(_read_exactly(file, _CRC.size, f"frame {index}"))[0] != _crc(head, payload):
        raise BitstreamError(f"frame {index}: {expected.name.lower()} packet is corrupted (CRC mismatch)")
    return payload


def read_sevc(path: str | os.PathLike, skip_enhancement: bool = False) -> Tuple[StreamHeader, List[Frame]]:
    """Read and check a whole sevc container (every CRC, the packet order, the frame count).

    skip_enhancement: do not read enhancement packets (their payloads are returned empty).
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        header = _read_header(file)
        frames = []
        for index in range(header.frame_count):
            frames.append([_read_packet(file, size, kind, index, skip_enhancement and kind == Packet.ENHANCEMENT)
                           for kind in header.frame_packets(index)])
        if file.read(1):
            raise BitstreamError(f"unexpected data after the last of {header.frame_count} frames")
    return header, frames


def write_official(folder: str | os.PathLike, header: StreamHeader, frames: Sequence[Frame]) -> None:
    """Write frames in the published encoder's folder layout (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OFFICIAL_HEADER_FILE).write_bytes(
        _OFFICIAL_HEADER.pack(header.intra_period, header.height, header.width, header.q_index, int(header.fast)))
    for index, payloads in enumerate(frames):
        (folder / f"{index}.bin").write_bytes(b"".join(_LENGTH.pack(len(p)) + p for p in payloads))


def _read_official_frame(path: Path, parts: int) -> Frame:
    data = path.read_bytes()
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


def read_official(folder: str | os.PathLike, refresh_interval: int = 32) -> Tuple[StreamHeader, List[Frame]]:
    """Read a stream in the published layout: frames 0.bin, 1.bin, ... up to the first missing one."""
    folder = Path(folder)
    data = (folder / OFFICIAL_HEADER_FILE).read_bytes()
    if len(data) != _OFFICIAL_HEADER.size:
        raise BitstreamError(f"{folder / OFFICIAL_HEADER_FILE} has {len(data)} bytes, expected {_OFFICIAL_HEADER.size}")
    intra_period, height, width, q_index, fast = _OFFICIAL_HEADER.unpack(data)
    if fast not in (0, 1):
        raise BitstreamError(f"{folder / OFFICIAL_HEADER_FILE}: invalid fast flag {fast}")
    header = StreamHeader(width, height, q_index, intra_period, refresh_interval, bool(fast))
    _validate_header(header)
    frames = []
    while (folder / f"{len(frames)}.bin").is_file():
        frames.append(_read_official_frame(folder / f"{len(frames)}.bin", len(header.frame_packets(len(frames)))))
    if not frames:
        raise BitstreamError(f"{folder} holds no frame (0.bin)")
    header.frame_count = len(frames)
    return header, frames


def read_stream(path: str | os.PathLike, skip_enhancement: bool = False,
                refresh_interval: int = 32) -> Tuple[StreamHeader, List[Frame], str]:
    """Read either format, detected from `path`: (header, frames, 'sevc' or 'official').

    refresh_interval applies to official streams, whose header does not record it.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / OFFICIAL_HEADER_FILE).is_file():
            raise BitstreamError(f"{path} is a folder without {OFFICIAL_HEADER_FILE}: not an SEVC stream")
        header, frames = read_official(path, refresh_interval)
        return header, frames, "official"
    if not path.is_file():
        raise BitstreamError(f"stream not found: {path}")
    header, frames = read_sevc(path, skip_enhancement)
    return header, frames, "sevc"
