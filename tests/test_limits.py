"""Stream headers are checked against sevc's limits before anything is allocated; frames are read
one at a time."""
from __future__ import annotations

import contextlib
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from sevc.codec.bitstream import SevcStream, open_stream
from sevc.cli import decode, encode
from sevc.errors import BitstreamError
from sevc.limits import MAX_FRAMES, MAX_PIXELS, MAX_SIDE

from conftest import CLI_CASE, REPO, assert_clear_error, cli, model_args
from reference import FIXTURES

HEADER = struct.Struct(">4sBBBIIBiII8s")


def _sevc_header(width=128, height=128, frame_count=1, q_index=10, intra_period=-1) -> bytes:
    data = HEADER.pack(b"SEVC", 2, 0, 0, width, height, q_index, intra_period, 32, frame_count, bytes(8))
    return data + struct.pack(">I", zlib.crc32(data))


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize("width,height", [(2 ** 31, 128), (128, 2 ** 27), (MAX_SIDE + 1, 64), (8000, 8000),
                                          (32, 128), (0, 0)])
def test_sevc_header_sizes_outside_the_limits(tmp_path, width, height):
    path = tmp_path / "s.sevc"
    path.write_bytes(_sevc_header(width, height) + bytes(64))
    before, start = _rss(), time.perf_counter()
    with pytest.raises(BitstreamError, match="invalid stream header: frames"):
        open_stream(path)
    assert time.perf_counter() - start < 1 and _rss() - before < 50 << 20


def test_largest_frames_are_8k():
    assert MAX_SIDE >= 7680 and MAX_PIXELS >= 7680 * 4320


@pytest.mark.parametrize("count", [0, MAX_FRAMES + 1, 2 ** 32 - 1])
def test_frame_counts_outside_the_limits(tmp_path, count):
    path = tmp_path / "s.sevc"
    path.write_bytes(_sevc_header(frame_count=count))
    with pytest.raises(BitstreamError, match="frames"):
        open_stream(path)


def test_a_header_announcing_more_frames_than_the_file_can_hold(tmp_path):
    path = tmp_path / "s.sevc"
    path.write_bytes(_sevc_header(frame_count=1000) + bytes(100))
    with pytest.raises(BitstreamError, match="announces 1000 frames"):
        open_stream(path)


def test_millions_of_empty_packets_are_not_parsed_up_front(tmp_path, ckpt, capsys):
    """A file of a million empty intra packets: refused at its first frame, in well under a second."""
    count = 900_000
    header = _sevc_header(frame_count=count, intra_period=1)
    chain, packets = zlib.crc32(header[:-4]), []
    head = struct.pack(">BI", 1, 0)
    for _ in range(count):
        chain = zlib.crc32(head, chain)
        packets.append(head + struct.pack(">I", chain))
    path = tmp_path / "many.sevc"
    path.write_bytes(header + b"".join(packets))
    start = time.perf_counter()
    stream = SevcStream(path)
    assert next(stream.frames()) == [b""]
    assert time.perf_counter() - start < 0.5
    assert_clear_error(cli(decode.main, ["-b", path, "-o", tmp_path / "out", *model_args(ckpt)], capsys))


def test_official_header_with_a_flipped_bit(tmp_path, ckpt, capsys):
    folder = tmp_path / "bin"
    assert cli(encode.main, ["-i", FIXTURES / CLI_CASE / "frames", "--width", 128, "--height", 128, "-q", 20, "-f", 1,
                             "-b", folder, "--format", "official", *model_args(ckpt)], capsys)[0] == 0
    header = bytearray((folder / "headers.bin").read_bytes())
    header[4] ^= 0x40  # height 128 -> 2^30 + 128
    (folder / "headers.bin").write_bytes(bytes(header))
    start = time.perf_counter()
    assert_clear_error(cli(decode.main, ["-b", folder, "-o", tmp_path / "out", *model_args(ckpt)], capsys),
                       "exceed the largest size")
    assert time.perf_counter() - start < 5


def test_official_stream_with_a_missing_frame_file(tmp_path, ckpt, capsys):
    folder = tmp_path / "bin"
    assert cli(encode.main, ["-i", FIXTURES / CLI_CASE / "frames", "--width", 128, "--height", 128, "-q", 20, "-f", 4,
                             "-b", folder, "--format", "official", *model_args(ckpt)], capsys)[0] == 0
    (folder / "2.bin").unlink()
    assert_clear_error(cli(decode.main, ["-b", folder, "-o", tmp_path / "out", *model_args(ckpt)], capsys),
                       "lacks frame 2 (2.bin)")
    assert not (tmp_path / "out").exists()


def test_encoder_refuses_frames_beyond_the_limits(tmp_path, ckpt, capsys):
    result = cli(encode.main, ["-i", FIXTURES / CLI_CASE / "frames", "--width", MAX_SIDE + 16, "--height", 128,
                               "-q", 20, "-b", tmp_path / "s.sevc", *model_args(ckpt)], capsys)
    assert_clear_error(result, "exceed the largest size")


def test_a_packet_of_the_wrong_type_is_named(tmp_path):
    header = _sevc_header()
    head = struct.pack(">BI", 2, 1)
    path = tmp_path / "s.sevc"
    path.write_bytes(header + head + b"x" + struct.pack(">I", zlib.crc32(b"x", zlib.crc32(head, zlib.crc32(header[:-4])))))
    with pytest.raises(BitstreamError, match="frame 0: expected an intra packet, found type 2"):
        next(open_stream(path).frames())


# Bounded reads: every file is checked (a regular file, of a size its header allows) before it is read.

def _official_stream(folder: Path, frames: int = 3) -> Path:
    """A hand-made official stream of 128x128 frames (I, P, P) whose frame files parse."""
    folder.mkdir()
    (folder / "headers.bin").write_bytes(struct.pack(">iIIII", -1, 128, 128, 1, 0))
    for k in range(frames):
        parts = 1 if k == 0 else 2
        (folder / f"{k}.bin").write_bytes(b"".join(struct.pack(">I", 3) + b"abc" for _ in range(parts)))
    return folder


def _sparse(path: Path, size: int) -> None:
    """A file of `size` zero bytes taking no disk space."""
    path.touch()
    os.truncate(path, size)


READER = """
import sys
from sevc.codec.bitstream import open_stream
from sevc.errors import SevcError
try:
    for frame in open_stream(sys.argv[1]).frames():
        pass
except SevcError as exc:
    print(f"error: {exc}")
"""


def _read_limited(folder: Path) -> str:
    """Every frame of the stream `folder`, read in a process limited to 2 GiB of address space and
    60 s: its one line of output."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    result = subprocess.run([sys.executable, "-c", READER, str(folder)], capture_output=True, text=True, timeout=60,
                            preexec_fn=limit)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stdout.strip()


@pytest.mark.parametrize("frame, make, message", [
    ("1.bin", lambda p: p.symlink_to("/dev/zero"), "1.bin is a device"),
    ("1.bin", os.mkfifo, "1.bin is a FIFO"),
    ("1.bin", os.mkdir, "1.bin is a folder"),
    ("2.bin", lambda p: _sparse(p, 1_500_000_000), "2.bin has 1500000000 bytes"),
    ("0.bin", lambda p: _sparse(p, 5_000_000_000), "0.bin has 5000000000 bytes"),
])
def test_official_frame_files_are_checked_before_they_are_read(tmp_path, frame, make, message):
    folder = _official_stream(tmp_path / "off")
    (folder / frame).unlink()
    make(folder / frame)
    start = time.perf_counter()
    line = _read_limited(folder)
    assert line.startswith("error: ") and message in line, line
    assert time.perf_counter() - start < 30


def test_a_sevc_packet_longer_than_its_frame_allows(tmp_path):
    """A packet may not announce more bytes than a frame of the header's size codes to."""
    header = _sevc_header()
    path = tmp_path / "s.sevc"
    path.write_bytes(header + struct.pack(">BI", 1, 1_000_000_000))
    os.truncate(path, 1_100_000_000)
    start = time.perf_counter()
    with pytest.raises(BitstreamError, match="frame 0"):
        next(open_stream(path).frames())
    assert time.perf_counter() - start < 1


@contextlib.contextmanager
def fifo(path: Path, seconds: float = 20):
    """A FIFO at `path`; a reader blocked on it is released after `seconds` (it then reads nothing)."""
    os.mkfifo(path)
    done = threading.Event()

    def release():
        if not done.wait(seconds):
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join()


def _fifo_args(tool: str, path: Path, tmp_path: Path, ckpt: Path):
    """(main, arguments) of `tool` reading the FIFO `path` where it expects a file."""
    from sevc.cli import bdrate, evaluate, train

    results = tmp_path / "r.json"
    results.write_text("{}")
    frames = ["-i", FIXTURES / CLI_CASE / "frames", "--width", 128, "--height", 128, "-q", 1, "-b", tmp_path / "s.sevc"]
    return {"bd_rate": (bdrate.main, ["--anchor", f"A={path}", "--test", f"B={results}", "-o", tmp_path / "rep"]),
            "bd_rate test": (bdrate.main, ["--anchor", f"A={results}", "--test", f"B={path}", "-o", tmp_path / "rep"]),
            "test config": (evaluate.main, ["--test_config", path, "--output_path", tmp_path / "o.json",
                                            *model_args(ckpt)]),
            "train config": (train.main, ["--config", path, "-o", tmp_path / "run"]),
            "checkpoint": (encode.main, [*frames, "--i_frame_model_path", path, "--p_frame_model_path",
                                         ckpt / "p.pth.tar", "--cuda", "0"])}[tool]


@pytest.mark.parametrize("tool", ["bd_rate", "bd_rate test", "test config", "train config", "checkpoint"])
def test_fifos_are_refused_where_a_file_is_expected(tmp_path, ckpt, capsys, tool):
    with fifo(tmp_path / "pipe") as path:
        main, args = _fifo_args(tool, path, tmp_path, ckpt)
        start = time.perf_counter()
        assert_clear_error(cli(main, args, capsys), "pipe", "FIFO")
        assert time.perf_counter() - start < 10


@pytest.mark.parametrize("tool", ["bd_rate", "test config", "train config"])
def test_deeply_nested_json_is_one_line(tmp_path, ckpt, capsys, tool):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    main, args = _fifo_args(tool, path, tmp_path, ckpt)
    assert_clear_error(cli(main, args, capsys), "deep.json", "nested")


def test_out_of_memory_is_said_up_front_and_is_one_line(tmp_path, ckpt):
    """2048x2048 frames in a process that may use 2 GiB: a warning before coding, then one error
    line with the need and what to do, and no output."""
    from PIL import Image

    (tmp_path / "frames").mkdir()
    with Image.open(FIXTURES / CLI_CASE / "frames" / "im00001.png") as image:
        image.resize((2048, 2048)).save(tmp_path / "frames" / "im00001.png")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    command = [sys.executable, str(REPO / "encoder.py"), "-i", str(tmp_path / "frames"), "--width", "2048",
               "--height", "2048", "-q", "20", "-b", str(tmp_path / "s.sevc"), "--numerics", "float",
               *map(str, model_args(ckpt))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith(("warning:", "error:"))]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 2 and "2048x2048" in lines[0] and "GiB" in lines[0], lines
    assert lines[1].startswith("error: out of memory coding 2048x2048 frames") and "GiB needed" in lines[1], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
