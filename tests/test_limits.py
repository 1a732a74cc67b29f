"""Stream headers are checked against sevc's limits before anything is allocated; frames are read
one at a time."""
from __future__ import annotations

import resource
import struct
import time
import zlib

import pytest

from sevc.codec.bitstream import SevcStream, open_stream
from sevc.cli import decode, encode
from sevc.errors import BitstreamError
from sevc.limits import MAX_FRAMES, MAX_PIXELS, MAX_SIDE

from conftest import CLI_CASE, assert_clear_error, cli, model_args
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
