"""Mutated SEVC streams, and a worker that decodes them one by one (run in its own process so
that its peak memory can be measured).

`python stream_fuzzer.py STREAMS CKPT COUNT SEED REPORT` mutates the streams in the folder STREAMS
(`full.sevc`, `fast.sevc` and the official folder `official/`) COUNT times, decodes every variant
with the checkpoints in CKPT, and writes REPORT (JSON): per variant its mutation, the outcome
('decoded' or 'error: <message>') and the seconds it took, and the process's peak RSS in bytes.
Anything but a sevc error (a traceback, a crash) makes the worker fail.
"""
from __future__ import annotations

import json
import resource
import shutil
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

FIELDS = (("magic", "4s"), ("version", "B"), ("flags", "B"), ("numerics", "B"), ("width", "I"), ("height", "I"),
          ("q_index", "B"), ("intra_period", "i"), ("refresh_interval", "I"), ("frame_count", "I"),
          ("weights_id", "8s"))
HEADER = struct.Struct(">" + "".join(fmt for _, fmt in FIELDS))  # the sevc container's header, CRC excluded
EXTREMES = (0, 1, 2, 63, 64, 65, 127, 128, 129, 255, 4096, 7680, 8192, 8193, 65535, 2 ** 31 - 1, 2 ** 32 - 1)


def _crc(data: bytes, previous: int = 0) -> int:
    return zlib.crc32(data, previous)


def _packets(data: bytes) -> List[Tuple[int, int]]:
    """(offset, total size) of every packet of a valid sevc stream."""
    offset, packets = HEADER.size + 4, []
    while offset < len(data):
        _, length = struct.unpack_from(">BI", data, offset)
        packets.append((offset, 5 + length + 4))
        offset += 5 + length + 4
    return packets


def _rechain(data: bytearray) -> bytearray:
    """Recompute every CRC of a sevc stream (header and the packet chain), as a forger would."""
    data[HEADER.size:HEADER.size + 4] = struct.pack(">I", _crc(bytes(data[:HEADER.size])))
    chain = _crc(bytes(data[:HEADER.size]))
    offset = HEADER.size + 4
    while offset + 5 <= len(data):
        _, length = struct.unpack_from(">BI", data, offset)
        end = offset + 5 + length
        if end + 4 > len(data):
            break
        chain = _crc(bytes(data[offset:end]), chain)
        data[end:end + 4] = struct.pack(">I", chain)
        offset = end + 4
    return data


def _rewrite_header(data: bytearray, rng: np.random.Generator, forge: bool) -> Tuple[bytes, str]:
    values = list(HEADER.unpack_from(data))
    field = int(rng.integers(1, len(FIELDS)))
    name, fmt = FIELDS[field]
    if fmt == "8s":
        values[field] = rng.bytes(8)
    else:
        bits = {"B": 8, "I": 32, "i": 32}[fmt]
        value = int(rng.choice(EXTREMES)) if rng.random() < 0.6 else int(values[field]) + int(rng.integers(-3, 4))
        value %= 2 ** bits
        values[field] = value - 2 ** 32 if fmt == "i" and value >= 2 ** 31 else value
    data[:HEADER.size] = HEADER.pack(*values)
    data[HEADER.size:HEADER.size + 4] = struct.pack(">I", _crc(bytes(data[:HEADER.size])))
    if forge:
        data = _rechain(data)
    return bytes(data), f"header {name} = {values[field]!r}" + (" (all CRCs forged)" if forge else "")


def _flip_bits(data: bytearray, rng: np.random.Generator, start: int = 0) -> Tuple[bytearray, str]:
    flips = int(rng.integers(1, 9))
    for _ in range(flips):
        bit = int(rng.integers(start * 8, len(data) * 8))
        data[bit // 8] ^= 1 << (bit % 8)
    return data, f"{flips} bits flipped"


def mutate_sevc(valid: bytes, rng: np.random.Generator) -> Tuple[bytes, str]:
    """One mutation of a valid sevc stream."""
    data = bytearray(valid)
    kind = int(rng.integers(0, 9))
    if kind == 8:  # random bytes, half of them behind a valid magic and version
        data = bytearray(rng.bytes(int(rng.integers(0, 4096))))
        if rng.random() < 0.5:
            data[:5] = b"SEVC\x02"
        return bytes(data), f"{len(data)} random bytes"
    if kind in (0, 1):
        return _rewrite_header(data, rng, forge=kind == 1)
    if kind == 2:
        data, what = _flip_bits(data, rng)
        return bytes(data), what
    if kind == 3:
        cut = int(rng.integers(0, len(data)))
        return bytes(data[:cut]), f"truncated to {cut} bytes"
    if kind == 4:  # payload bytes changed and every CRC forged: the payload reaches the rANS decoder
        offset, size = _packets(valid)[int(rng.integers(0, len(_packets(valid))))]
        data, what = _flip_bits(data[:offset + size], rng, start=offset + 5)
        data = _rechain(data + bytearray(valid[offset + size:]))
        return bytes(data), f"packet at {offset}: {what}, CRCs forged"
    if kind == 5:  # a packet length rewritten, CRCs forged
        offset, _ = _packets(valid)[int(rng.integers(0, len(_packets(valid))))]
        length = int(rng.choice(EXTREMES))
        data[offset + 1:offset + 5] = struct.pack(">I", length)
        return bytes(_rechain(data)), f"packet at {offset}: length {length}, CRCs forged"
    if kind == 6:
        extra = rng.bytes(int(rng.integers(1, 64)))
        return bytes(data) + extra, f"{len(extra)} bytes appended"
    packets = _packets(valid)
    offset, size = packets[int(rng.integers(0, len(packets)))]
    return bytes(data[:offset + size] + data[offset:]), f"packet at {offset} repeated"


def mutate_official(folder: Path, target: Path, rng: np.random.Generator) -> str:
    """One mutation of a valid official stream folder, written to `target`."""
    shutil.copytree(folder, target)
    frames = sorted(target.glob("*.bin"), key=lambda p: (len(p.name), p.name))
    kind = int(rng.integers(0, 6))
    if kind == 0:
        header = target / "headers.bin"
        values = list(struct.unpack(">iIIII", header.read_bytes()))
        field = int(rng.integers(0, 5))
        value = int(rng.choice(EXTREMES)) % 2 ** 31
        values[field] = value
        header.write_bytes(struct.pack(">iIIII", *values))
        return f"headers.bin field {field} = {value}"
    if kind == 1:
        header = target / "headers.bin"
        data, what = _flip_bits(bytearray(header.read_bytes()), rng)
        header.write_bytes(bytes(data))
        return f"headers.bin: {what}"
    frame = frames[int(rng.integers(1, len(frames)))]  # headers.bin sorts first
    if kind == 2:
        data, what = _flip_bits(bytearray(frame.read_bytes()), rng)
        frame.write_bytes(bytes(data))
        return f"{frame.name}: {what}"
    if kind == 3:
        data = frame.read_bytes()
        cut = int(rng.integers(0, len(data)))
        frame.write_bytes(data[:cut])
        return f"{frame.name} truncated to {cut} bytes"
    if kind == 4:
        frame.unlink()
        return f"{frame.name} removed"
    frame.write_bytes(frame.read_bytes() + rng.bytes(int(rng.integers(1, 64))))
    return f"{frame.name}: bytes appended"


def _decode(models, stream: Path, out: Path, skim: bool) -> str:
    from sevc.codec.bitstream import open_stream
    from sevc.codec.files import decode_to_folder
    from sevc.errors import SevcError

    try:
        for _ in decode_to_folder(models, open_stream(stream, skim=skim), out, skim):
            pass
        shutil.rmtree(out)
        return "decoded"
    except SevcError as exc:
        assert not out.exists(), "output left behind"
        return f"error: {exc}"


def main(streams: Path, ckpt: Path, count: int, seed: int, report: Path) -> None:
    import torch

    from sevc.weights.models import load_models

    torch.set_num_threads(1)
    models = load_models(ckpt / "i.pth.tar", ckpt / "p.pth.tar")
    rng = np.random.default_rng(seed)
    sources = {name: (streams / name).read_bytes() for name in ("full.sevc", "fast.sevc")}
    results: List[Dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for k in range(count):
            case = scratch / f"case{k}"
            if k % 5 < 3:
                name = "full.sevc" if k % 5 < 2 else "fast.sevc"
                data, what = mutate_sevc(sources[name], rng)
                case.write_bytes(data)
                what = f"{name}: {what}"
            else:
                what = "official: " + mutate_official(streams / "official", case, rng)
            begin = time.perf_counter()
            skim = k % 7 == 0
            outcome = _decode(models, case, scratch / "out", skim)
            results.append({"mutation": what, "skim": skim, "outcome": outcome,
                            "seconds": time.perf_counter() - begin, "peak_rss": _peak_rss()})
            shutil.rmtree(case) if case.is_dir() else case.unlink()
    report.write_text(json.dumps({"peak_rss": _peak_rss(), "cases": results}, indent=1))


def _peak_rss() -> int:
    """The process's peak resident memory so far, in bytes: Linux's VmHWM, which starts afresh at
    exec (ru_maxrss does not: it keeps the parent's peak from before the fork)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
