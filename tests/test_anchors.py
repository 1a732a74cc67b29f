"""anchors.py: standard codecs through FFmpeg, in test.py's result schema (tiny clips, CPU)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sevc.cli import anchors, bdrate
from sevc.eval.anchors import CODECS, AnchorJob, Coder, code_sequence
from sevc.eval.evaluation import load_test_config
from sevc.eval.ffmpeg import find_ffmpeg
from sevc.eval.metrics import msssim
from sevc.eval.results import load_results
from sevc.psnr import psnr
from sevc.io.frames import read_png_folder, rgb_to_yuv420, yuv420_to_rgb

from conftest import CLIPS, REPO, assert_clear_error, cli

QPS = ["--qp", 24, 30, 36, 42]
FAST_PRESETS = {"x264": "veryslow", "x265": "veryslow", "vvc": "faster", "av1": "6"}
EXTENSIONS = {"x264": "264", "x265": "265", "vvc": "266", "av1": "obu"}


def _config(tmp_path: Path, base: Path, sequences: dict, src_type: str = "png") -> Path:
    config = {"root_path": str(base.parent), "test_classes": {"clips": {
        "test": 1, "base_path": base.name, "src_type": src_type, "sequences": sequences}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _packets(stream: Path):
    """Each packet's size (bytes) and the raw decoded frames, as FFmpeg reports them."""
    raw = stream.with_suffix(".raw")
    pixel_format = "yuv420p10le" if stream.suffix == ".266" else "yuv420p"
    listing = subprocess.run([find_ffmpeg(), "-v", "error", "-i", stream, "-map", "0", "-c", "copy", "-f", "framecrc",
                              "-", "-map", "0", "-f", "rawvideo", "-pix_fmt", pixel_format, "-y", raw],
                             capture_output=True, text=True, check=True).stdout
    sizes = [int(line.split(",")[4]) for line in listing.splitlines() if line and not line.startswith("#")]
    samples = np.fromfile(raw, dtype=np.uint16 if pixel_format == "yuv420p10le" else np.uint8)
    if pixel_format == "yuv420p10le":
        samples = ((samples.astype(np.int32) + 2) >> 2).clip(0, 255).astype(np.uint8)
    return sizes, samples


def _decoded(samples: np.ndarray, width: int, height: int, crop=None):
    """RGB frames of 8-bit 4:2:0 samples, cropped to `crop` (width, height)."""
    luma, chroma = width * height, width * height // 4
    frames = []
    for frame in samples.reshape(-1, luma + 2 * chroma):
        rgb = yuv420_to_rgb(frame[:luma].reshape(height, width),
                            frame[luma:luma + chroma].reshape(height // 2, width // 2),
                            frame[luma + chroma:].reshape(height // 2, width // 2))
        frames.append(rgb if crop is None else rgb[:, :, :crop[1], :crop[0]])
    return frames


def _without_time(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "test_time"}


@pytest.mark.parametrize("codec", ["x264", "x265", "vvc", "av1"])
def test_each_codec_writes_records_of_its_real_streams(codec, tmp_path, capsys):
    """Low delay at intra period 2 on 3 frames: I P I; bd_rate.py takes the file; coding a job
    again (keeping its stream) gives the same record, whose bits are the stream's packets' sizes
    and whose PSNR is ours of the decoded frames."""
    config = _config(tmp_path, CLIPS, {"carphone_176x144": {"width": 176, "height": 144, "frames": 3, "gop": 2}})
    status, _, err = cli(anchors.main, ["--test_config", config, "--codec", codec, *QPS, "--preset",
                                        FAST_PRESETS[codec], "--output_path", tmp_path / "a.json"], capsys)
    assert status == 0, err
    assert not (tmp_path / "a.json.jobs").exists()  # records go once the result file is complete
    results = load_results(tmp_path / "a.json")["clips"]["carphone_176x144"]
    assert sorted(results) == ["000", "001", "002", "003"] and [r["qp"] for r in results.values()] == [24, 30, 36, 42]
    status, out, err = cli(bdrate.main, ["--anchor", f"A={tmp_path / 'a.json'}", "--test", f"B={tmp_path / 'a.json'}",
                                         "-o", tmp_path / "report"], capsys)
    assert status == 0 and "| B | 0.0 | 0.0 |" in out, err
    sequence, = load_test_config(config)
    coder = Coder(CODECS[codec], FAST_PRESETS[codec], 1, find_ffmpeg())
    sources = list(read_png_folder(CLIPS / "carphone_176x144", 176, 144, 3))
    for rate, record in results.items():
        stream = tmp_path / f"{rate}.{EXTENSIONS[codec]}"
        assert _without_time(code_sequence(AnchorJob(sequence, int(rate), record["qp"]), coder, stream)) == \
            _without_time(record)
        assert record["frame_type"] == [0, 1, 0] and record["i_frame_num"] == 2 and record["p_frame_num"] == 1
        sizes, samples = _packets(stream)
        assert [b * 176 * 144 for b in record["frame_bpp"]] == pytest.approx([8.0 * s for s in sizes], rel=1e-12)
        assert sum(sizes) == stream.stat().st_size
        ours = [float(psnr(x, y)) for x, y in zip(_decoded(samples, 176, 144), sources)]
        assert record["frame_psnr"] == ours and record["frame_msssim"] == [None] * 3
    bpps = [r["ave_all_frame_bpp"] for r in results.values()]
    assert bpps == sorted(bpps, reverse=True)


def test_odd_sizes_are_padded_for_4_2_0_and_cropped_back(tmp_path, capsys):
    """175x163 PNG frames are coded as 176x164; quality is measured on the 175x163 frames (MS-SSIM
    too: they are large enough), bpp per source pixel."""
    clip = tmp_path / "clips" / "odd"
    clip.mkdir(parents=True)
    for k, frame in enumerate(read_png_folder(CLIPS / "carphone_176x144", 176, 144, 2)):
        tall = torch.cat([frame, frame.flip(2)], dim=2)[0, :, 7:170, :175]  # 175x163: mirrored below itself
        pixels = (tall.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(clip / f"im{k + 1:05d}.png")
    sources = list(read_png_folder(clip, 175, 163))
    config = _config(tmp_path, clip.parent, {"odd": {"width": 175, "height": 163, "frames": 2, "gop": -1}})
    sequence, = load_test_config(config)
    record = code_sequence(AnchorJob(sequence, 0, 30), Coder(CODECS["x264"], "veryslow", 1, find_ffmpeg()),
                           tmp_path / "odd.264")
    sizes, samples = _packets(tmp_path / "odd.264")
    assert record["frame_pixel_num"] == 175 * 163
    assert sum(record["frame_bpp"]) * 175 * 163 == pytest.approx(8 * sum(sizes), rel=1e-12)
    decoded = _decoded(samples, 176, 164, crop=(175, 163))
    assert record["frame_psnr"] == [float(psnr(x, y)) for x, y in zip(decoded, sources)]
    assert record["frame_msssim"] == [float(msssim(x, y)) for x, y in zip(decoded, sources)]


def test_yuv_sources_are_coded_as_they_are(tmp_path, capsys):
    """A raw YUV file is coded byte for byte (no RGB round trip); its quality is measured against
    the RGB frames test.py reads from it."""
    frames = list(read_png_folder(CLIPS / "carphone_176x144", 176, 144, 2))
    (tmp_path / "yuv").mkdir()
    (tmp_path / "yuv" / "clip.yuv").write_bytes(b"".join(rgb_to_yuv420(x) for x in frames))
    config = _config(tmp_path, tmp_path / "yuv", {"clip": {"width": 176, "height": 144, "frames": 2, "gop": -1}},
                     src_type="yuv420")
    status, _, err = cli(anchors.main, ["--test_config", config, "--codec", "x264", "--qp", 0, "--output_path",
                                        tmp_path / "a.json"], capsys)
    assert status == 0, err
    record = json.loads((tmp_path / "a.json").read_text())["clips"]["clip"]["000"]
    assert min(record["frame_psnr"]) > 50  # QP 0: near-lossless coding of the same YUV samples


def test_x265_beats_x264_on_the_shipped_configuration(tmp_path, capsys, monkeypatch):
    """The README's small configuration, default settings: a sanity check of the anchors."""
    monkeypatch.chdir(REPO)
    for codec in ("x264", "x265"):
        status, _, err = cli(anchors.main, ["--test_config", "config_clips.json", "--codec", codec, "--output_path",
                                            tmp_path / f"{codec}.json"], capsys)
        assert status == 0, err
    status, _, err = cli(bdrate.main, ["--anchor", f"x264={tmp_path / 'x264.json'}",
                                       "--test", f"x265={tmp_path / 'x265.json'}", "-o", tmp_path / "r"], capsys)
    assert status == 0, err
    table = json.loads((tmp_path / "r" / "bd_rate.json").read_text())["bd_rate"]["psnr"]["x265"]
    assert table["Average"] < 0 and all(value < 0 for value in table.values())


def test_anchors_bad_input(tmp_path, capsys):
    config = _config(tmp_path, CLIPS, {"carphone_176x144": {"width": 176, "height": 144, "frames": 1, "gop": -1}})
    args = ["--test_config", config, "--output_path", tmp_path / "a.json"]
    assert_clear_error(cli(anchors.main, [*args, "--codec", "mpeg2"], capsys), "invalid choice: 'mpeg2'")
    assert_clear_error(cli(anchors.main, [*args, "--codec", "x264", "--qp", 52], capsys), "QP 52 is out of range")
    assert_clear_error(cli(anchors.main, [*args, "--codec", "x264", "--ffmpeg", tmp_path / "none"], capsys),
                       "is not an executable file")
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' V....D libx264              libx264 H.264'\n")
    fake.chmod(0o755)
    assert_clear_error(cli(anchors.main, [*args, "--codec", "vvc", "--ffmpeg", fake], capsys),
                       "has no libvvenc encoder")
    status, _, err = cli(anchors.main, [*args, "--codec", "x264", "--qp", 30, "--preset", "sluggish"], capsys)
    assert_clear_error((status, "", err), "clips/carphone_176x144 rate 0: libx264 failed")
    (tmp_path / "yuv").mkdir()
    (tmp_path / "yuv" / "odd.yuv").write_bytes(bytes(175 * 144 * 3))
    odd = _config(tmp_path, tmp_path / "yuv", {"odd": {"width": 175, "height": 144, "frames": 1, "gop": -1}},
                  src_type="yuv420")
    result = cli(anchors.main, ["--test_config", odd, "--codec", "x264", "--output_path", tmp_path / "b.json"], capsys)
    assert_clear_error(result, "clips/odd is 175x144", "even width and height")
    assert not (tmp_path / "b.json").exists()
