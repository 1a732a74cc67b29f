"""test.py, encoder.py, decoder.py and the demo, run as a user runs them (stand-in weights, CPU)."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sevc.cli import decode, demo, encode, evaluate
from sevc.cli.common import run
from sevc.io.frames import read_png, read_png_folder

from conftest import CLI_CASE as CASE
from conftest import assert_clear_error, cli, model_args
from reference import FIXTURES, case_info


@pytest.fixture(scope="module")
def streams(ckpt, tmp_path_factory):
    """The case encoded once in each format (full) and once fast, by encoder.py, in float numerics
    (what the published decoder's outputs in the fixtures are)."""
    info = case_info(CASE)
    out = tmp_path_factory.mktemp("streams")
    args = ["-i", FIXTURES / CASE / "frames", "--width", info["width"], "--height", info["height"],
            "-q", info["q_index"], *model_args(ckpt)]
    for name, extra in (("full.sevc", ["--numerics", "float"]), ("official", ["--format", "official"]),
                        ("fast.sevc", ["--fast", "1", "--numerics", "float"])):
        assert run(encode.main, [str(a) for a in args + ["-b", out / name] + extra]) == 0
    return out


def test_official_format_is_byte_identical_to_the_published_encoder(streams):
    info = case_info(CASE)
    header = (streams / "official" / "headers.bin").read_bytes()
    assert header == struct.pack(">iIIII", -1, info["height"], info["width"], info["q_index"], 0)
    for k in range(info["frames"]):
        parts = [(FIXTURES / CASE / "full" / f"frame{k:03d}_part{j}.bin").read_bytes() for j in range(1 if k == 0 else 2)]
        expected = b"".join(struct.pack(">I", len(p)) + p for p in parts)
        assert (streams / "official" / f"{k}.bin").read_bytes() == expected
    assert not (streams / "official" / f"{info['frames']}.bin").exists()


def _pictures(folder: Path):
    return np.stack([read_png(p)[0].numpy() for p in sorted(folder.glob("im*.png"))])


def test_decoder_full_and_skim_from_one_stream(streams, ckpt, tmp_path, capsys):
    full_fixture = np.load(FIXTURES / CASE / "full" / "decoded_full.npy")
    skim_fixture = np.load(FIXTURES / CASE / "full" / "decoded_skim.npy")
    for name in ("full.sevc", "official"):
        out = tmp_path / name
        status, stdout, _ = cli(decode.main, ["-b", streams / name, "-o", out, *model_args(ckpt)], capsys)
        assert status == 0 and "full 128x128 and skim 32x32 frames" in stdout
        # PNG rounding of the fixture's float reconstructions (at most one level off at .5 ties)
        assert np.abs(_pictures(out / "full") * 255 - np.rint(full_fixture * 255)).max() <= 1.0001
        assert np.abs(_pictures(out / "skim") * 255 - np.rint(skim_fixture * 255)).max() <= 1.0001
    assert (_pictures(tmp_path / "full.sevc" / "full") == _pictures(tmp_path / "official" / "full")).all()
    # --skim: the same 4x-downsampled video, base layer only
    status, stdout, _ = cli(decode.main, ["-b", streams / "full.sevc", "-o", tmp_path / "skim", "--skim",
                                          *model_args(ckpt)], capsys)
    assert status == 0 and not (tmp_path / "skim" / "full").exists()
    assert "skim 32x32 frames" in stdout and "128x128" not in stdout
    assert (_pictures(tmp_path / "skim" / "skim") == _pictures(tmp_path / "full.sevc" / "skim")).all()


def test_skim_decoding_never_reads_enhancement_packets(streams, ckpt, tmp_path, capsys):
    data = bytearray((streams / "full.sevc").read_bytes())
    header_size, packet_head = 40, 5
    offset, frame = header_size, 0
    while offset < len(data):  # corrupt the payload of every enhancement packet
        kind, length = struct.unpack_from(">BI", data, offset)
        if kind == 3:
            data[offset + packet_head] ^= 0xFF
        offset += packet_head + length + 4
        frame += 1
    corrupted = tmp_path / "corrupted.sevc"
    corrupted.write_bytes(bytes(data))
    assert_clear_error(cli(decode.main, ["-b", corrupted, "-o", tmp_path / "a", *model_args(ckpt)], capsys),
                       "enhancement-layer packet is corrupted")
    assert not (tmp_path / "a").exists()
    status, _, _ = cli(decode.main, ["-b", corrupted, "-o", tmp_path / "b", "--skim", *model_args(ckpt)], capsys)
    assert status == 0 and len(list((tmp_path / "b" / "skim").glob("*.png"))) == case_info(CASE)["frames"]


def test_fast_stream_decodes_to_the_fixture_skim(streams, ckpt, tmp_path, capsys):
    skim_fixture = np.load(FIXTURES / CASE / "fast" / "decoded_skim.npy")
    status, stdout, _ = cli(decode.main, ["-b", streams / "fast.sevc", "-o", tmp_path, "--yuv", *model_args(ckpt)],
                            capsys)
    assert status == 0 and not (tmp_path / "full").exists()
    assert np.abs(_pictures(tmp_path / "skim") * 255 - np.rint(skim_fixture * 255)).max() <= 1.0001
    assert (tmp_path / "skim.yuv").stat().st_size == skim_fixture.size // 2


def test_decoder_refuses_a_stream_of_other_weights(streams, ckpt, tmp_path, capsys):
    result = cli(decode.main, ["-b", streams / "full.sevc", "-o", tmp_path / "out",
                               *model_args(ckpt, "p_other.pth.tar")], capsys)
    assert_clear_error(result, "encoded with other weights")
    assert not (tmp_path / "out").exists()


def _config(tmp_path: Path, sequences: dict, src_type: str = "png", base: str = CASE) -> Path:
    config = {"root_path": str(FIXTURES), "test_classes": {"fixtures": {
        "test": 1, "base_path": base, "src_type": src_type, "sequences": sequences}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_test_py_equals_the_published_test_path(ckpt, tmp_path, capsys):
    info = case_info(CASE)
    frames = 2
    config = _config(tmp_path, {"frames": {"width": info["width"], "height": info["height"], "frames": frames,
                                           "gop": -1}})
    status, stdout, _ = cli(evaluate.main, ["--test_config", config, "--output_path", tmp_path / "r.json",
                                            *model_args(ckpt)], capsys)
    assert status == 0 and "checkpoint anchors" in stdout
    results = json.loads((tmp_path / "r.json").read_text())["fixtures"]["frames"]
    assert sorted(results) == ["000", "001", "002", "003"]
    record = results[f"{info['test_q_index']:03d}"]
    pixels = info["width"] * info["height"]
    assert record["frame_type"] == [0, 1] and record["i_frame_num"] == 1 and record["p_frame_num"] == 1
    for k in range(frames):
        assert abs(record["frame_bpp"][k] * pixels - info["test_path"]["bits"][k]) <= 1e-4 * info["test_path"]["bits"][k]
        assert abs(record["frame_psnr"][k] - info["test_path"]["psnr"][k]) <= 1e-4
    assert record["frame_msssim"] == [None, None] and record["ave_all_frame_msssim"] is None
    assert record["ave_all_frame_bpp"] == pytest.approx(sum(record["frame_bpp"]) / frames)
    assert record["test_time"] > 0


def test_test_py_reports_a_failing_sequence_and_finishes_the_others(ckpt, tmp_path, capsys):
    """A sequence that fails while it runs (its frame's pixels are cut short; its header, which is
    checked before the first job, is sound)."""
    good = {"width": 128, "height": 128, "frames": 1, "gop": -1}
    shutil.copytree(FIXTURES / CASE / "frames", tmp_path / "seq" / "frames")
    (tmp_path / "seq" / "broken").mkdir()
    frame = (FIXTURES / CASE / "frames" / "im00001.png").read_bytes()
    (tmp_path / "seq" / "broken" / "im00001.png").write_bytes(frame[:len(frame) // 2])
    config = {"root_path": str(tmp_path), "test_classes": {"fixtures": {
        "test": 1, "base_path": "seq", "src_type": "png", "sequences": {"frames": good, "broken": good}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    result = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                 "--worker", 2, "--rate_num", 2, "--p_frame_q_indexes", 10, 20,
                                 "--i_frame_q_indexes", 5, 6, *model_args(ckpt)], capsys)
    status, _, err = result
    assert status == 1 and "fixtures/broken rate 0" in err and "fixtures/broken rate 1" in err
    results = json.loads((tmp_path / "r.json").read_text())["fixtures"]
    assert list(results) == ["frames"] and sorted(results["frames"]) == ["000", "001"]


def test_yuv420_input_in_a_test_config(ckpt, tmp_path, capsys):
    from sevc.io.frames import rgb_to_yuv420, read_yuv420

    frames = list(read_png_folder(FIXTURES / CASE / "frames", 128, 128, 2))
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "clip.yuv").write_bytes(b"".join(rgb_to_yuv420(x, "bt709") for x in frames))
    back = list(read_yuv420(tmp_path / "seq" / "clip.yuv", 128, 128, matrix="bt709"))
    assert all(10 * torch.log10(1 / torch.mean((a - b) ** 2)) > 30 for a, b in zip(frames, back))
    config = {"root_path": str(tmp_path), "test_classes": {"yuv": {
        "test": 1, "base_path": "seq", "src_type": "yuv420", "yuv_matrix": "bt709",
        "sequences": {"clip": {"width": 128, "height": 128, "frames": 1, "gop": -1}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    status, _, _ = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                       "--rate_num", 1, "--i_frame_q_indexes", 30, *model_args(ckpt)], capsys)
    assert status == 0
    assert json.loads((tmp_path / "r.json").read_text())["yuv"]["clip"]["000"]["i_frame_num"] == 1


def test_demo_runs_on_the_bundled_clip(tmp_path, capsys):
    status, stdout, _ = cli(demo.main, ["-o", tmp_path / "demo", "--ckpt_dir", tmp_path / "no_ckpt"], capsys)
    assert status == 0
    assert "stand-in weights" in stdout and stdout.count("stand-in") == 1
    assert "decoder output equals the encoder's reconstruction" in stdout
    assert len(list((tmp_path / "demo" / "decoded" / "full").glob("*.png"))) == 6
    assert len(list((tmp_path / "demo" / "decoded" / "skim").glob("*.png"))) == 6
