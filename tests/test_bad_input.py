"""Bad input to the tools: one clear `error:` line, exit status 1, no output left behind."""
from __future__ import annotations

import json
import shutil

import pytest

from sevc.cli import decode, encode, evaluate

from conftest import CLI_CASE, assert_clear_error, cli, model_args
from reference import FIXTURES

FRAMES = FIXTURES / CLI_CASE / "frames"


def encoder(tmp_path, ckpt, capsys, *args, size=(128, 128), source=FRAMES):
    out = tmp_path / "out.sevc"
    result = cli(encode.main, ["-i", source, "--width", size[0], "--height", size[1], "-b", out,
                               *model_args(ckpt), *args], capsys)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    return result


def test_encoder_missing_input(tmp_path, ckpt, capsys):
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 3, source=tmp_path / "nothing"), "not found")


def test_encoder_misnamed_frames(tmp_path, ckpt, capsys):
    (tmp_path / "frames").mkdir()
    shutil.copy(FRAMES / "im00001.png", tmp_path / "frames" / "frame_1.png")
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 3, source=tmp_path / "frames"),
                       "expected im00001.png")


def test_encoder_size_mismatch(tmp_path, ckpt, capsys):
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 3, size=(130, 128)), "is 128x128, expected 130x128")


def test_encoder_fewer_frames_than_asked(tmp_path, ckpt, capsys):
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 3, "-f", 9), "holds 5 frames, 9 were asked for")


def test_encoder_q_out_of_range(tmp_path, ckpt, capsys):
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 64), "0..63")


def test_encoder_too_small_frames(tmp_path, ckpt, capsys):
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 1, size=(48, 128)), "at least 64x64")


def test_encoder_yuv_file_of_the_wrong_size(tmp_path, ckpt, capsys):
    (tmp_path / "clip.yuv").write_bytes(bytes(128 * 128 * 3 // 2 + 5))
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 1, source=tmp_path / "clip.yuv"),
                       "not a whole number")


def test_encoder_wrong_and_missing_checkpoints(tmp_path, ckpt, capsys):
    out = tmp_path / "out.sevc"
    args = ["-i", FRAMES, "--width", 128, "--height", 128, "-q", 1, "-b", out, "--cuda", "0"]
    wrong = ["--i_frame_model_path", ckpt / "i.pth.tar", "--p_frame_model_path", ckpt / "i.pth.tar"]
    assert_clear_error(cli(encode.main, args + wrong, capsys), "does not fit SEVC", "missing keys")
    missing = ["--i_frame_model_path", tmp_path / "none.pth.tar", "--p_frame_model_path", ckpt / "p.pth.tar"]
    assert_clear_error(cli(encode.main, args + missing, capsys), "checkpoint not found")
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
    junk = ["--i_frame_model_path", tmp_path / "junk.pth.tar", "--p_frame_model_path", ckpt / "p.pth.tar"]
    assert_clear_error(cli(encode.main, args + junk, capsys), "not a readable PyTorch checkpoint")
    assert not out.exists()


def test_encoder_output_path_that_cannot_be_written(tmp_path, ckpt, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    result = cli(encode.main, ["-i", FRAMES, "--width", 128, "--height", 128, "-q", 1, "-f", 1,
                               "-b", tmp_path / "file" / "out.sevc", *model_args(ckpt)], capsys)
    assert_clear_error(result, "cannot create")


@pytest.mark.parametrize("content, message", [
    (b"", "truncated"),
    (b"RIFF" + bytes(60), "not a sevc stream"),
    (b"SEVC\x07" + bytes(60), "unsupported sevc stream version 7"),
])
def test_decoder_unknown_or_truncated_streams(tmp_path, ckpt, capsys, content, message):
    (tmp_path / "s.sevc").write_bytes(content)
    result = cli(decode.main, ["-b", tmp_path / "s.sevc", "-o", tmp_path / "out", *model_args(ckpt)], capsys)
    assert_clear_error(result, message)
    assert not (tmp_path / "out").exists()


def test_decoder_missing_stream_and_folder_without_header(tmp_path, ckpt, capsys):
    result = cli(decode.main, ["-b", tmp_path / "none.sevc", "-o", tmp_path / "out", *model_args(ckpt)], capsys)
    assert_clear_error(result, "stream not found")
    result = cli(decode.main, ["-b", tmp_path, "-o", tmp_path / "out", *model_args(ckpt)], capsys)
    assert_clear_error(result, "without headers.bin")


def test_official_stream_with_a_truncated_frame(tmp_path, ckpt, capsys):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "headers.bin").write_bytes((-1).to_bytes(4, "big", signed=True) + (128).to_bytes(4, "big") * 2
                                         + (1).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    (folder / "0.bin").write_bytes((100).to_bytes(4, "big") + bytes(10))
    result = cli(decode.main, ["-b", folder, "-o", tmp_path / "out", *model_args(ckpt)], capsys)
    assert_clear_error(result, "0.bin is truncated")


def test_test_py_bad_config_and_q_indexes(tmp_path, ckpt, capsys):
    base = ["--output_path", tmp_path / "r.json", *model_args(ckpt)]
    (tmp_path / "bad.json").write_text("{")
    assert_clear_error(cli(evaluate.main, ["--test_config", tmp_path / "bad.json", *base], capsys), "not valid JSON")
    (tmp_path / "c.json").write_text(json.dumps({"root_path": ".", "test_classes": {"x": {"test": 1}}}))
    assert_clear_error(cli(evaluate.main, ["--test_config", tmp_path / "c.json", *base], capsys),
                       "test class x: missing \"src_type\"")
    assert_clear_error(cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--p_frame_q_indexes", 1, 2, 3, 4,
                                           *base], capsys), "give --i_frame_q_indexes too")
    assert_clear_error(cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--rate_num", 2,
                                           "--i_frame_q_indexes", 1, 70, *base], capsys), "q index 70")
    assert not (tmp_path / "r.json").exists()
    (tmp_path / "file").write_text("a file, not a folder")
    result = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "file" / "r.json",
                                 *model_args(ckpt)], capsys)
    assert_clear_error(result, "cannot create")


def _png(path, array, mode=None):
    from PIL import Image

    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)


def test_png_modes_are_converted_exactly_or_refused(tmp_path):
    import numpy as np
    from PIL import Image

    from sevc.errors import FrameError
    from sevc.io.frames import read_png

    rng = np.random.default_rng(0)
    gray16 = rng.integers(0, 65536, (64, 64)).astype(np.uint16)
    _png(tmp_path / "gray16.png", gray16)
    np.testing.assert_allclose(read_png(tmp_path / "gray16.png")[0].numpy(),
                               np.repeat((gray16 / 65535.0)[None], 3, 0), atol=1e-7)
    gray = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    _png(tmp_path / "gray.png", gray)
    assert (read_png(tmp_path / "gray.png")[0].numpy() == np.repeat(gray[None] / np.float32(255), 3, 0)).all()
    rgb = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    expected = np.asarray(Image.open(tmp_path / "palette.png").convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    assert (read_png(tmp_path / "palette.png")[0].numpy() == expected).all()
    _png(tmp_path / "opaque.png", np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], 2), "RGBA")
    assert (read_png(tmp_path / "opaque.png")[0].numpy() == rgb.transpose(2, 0, 1) / np.float32(255)).all()
    _png(tmp_path / "alpha.png", np.concatenate([rgb, np.full((64, 64, 1), 128, np.uint8)], 2), "RGBA")
    with pytest.raises(FrameError, match="transparent pixels"):
        read_png(tmp_path / "alpha.png")


def test_16_bit_color_png_is_refused(tmp_path):
    import struct
    import zlib

    import numpy as np

    from sevc.errors import FrameError
    from sevc.io.frames import read_png

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + np.full((64, 3), 40000, ">u2").tobytes() for _ in range(64))
    (tmp_path / "rgb48.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 16, 2, 0, 0, 0))
                                         + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    with pytest.raises(FrameError, match="16-bit color"):
        read_png(tmp_path / "rgb48.png")


@pytest.mark.parametrize("flag", ["--fast", "--cuda", "--ec_thread"])
def test_boolean_flags_take_0_or_1(tmp_path, ckpt, capsys, flag):
    result = encoder(tmp_path, ckpt, capsys, "-q", 1, flag, "maybe")
    assert_clear_error(result, "expected 0 or 1, got 'maybe'")


def test_missing_input_folder_is_named_as_an_input(tmp_path, ckpt, capsys):
    result = encoder(tmp_path, ckpt, capsys, "-q", 1, source=tmp_path / "frames_dir")
    assert_clear_error(result, "input not found", "PNG frames or a raw .yuv file")


@pytest.mark.parametrize("content, message", [
    ({"weights": object()}, "Python objects besides tensors (builtins.object)"),
    ("raw pickle", "not a PyTorch file"),
    (b"PK\x03\x04 not really a zip", "not a PyTorch file"),
    ([1, 2], "does not hold a state_dict"),
    ({"w": "a string"}, "does not hold a state_dict"),
    ("truncated", "not a PyTorch file"),
])
def test_bad_checkpoints_give_one_line(tmp_path, ckpt, capsys, content, message):
    import pickle

    import torch

    path = tmp_path / "bad.pth.tar"
    if content == "raw pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif content == "truncated":
        path.write_bytes((ckpt / "i.pth.tar").read_bytes()[:5000])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    args = ["-i", FRAMES, "--width", 128, "--height", 128, "-q", 1, "-b", tmp_path / "out.sevc", "--cuda", "0",
            "--i_frame_model_path", path, "--p_frame_model_path", ckpt / "p.pth.tar"]
    status, _, err = cli(encode.main, args, capsys)
    assert_clear_error((status, "", err), message)
    assert len(err.strip().splitlines()) == 1, err


def test_test_py_refuses_frames_the_encoder_refuses(tmp_path, ckpt, capsys):
    config = {"root_path": str(FIXTURES), "test_classes": {"x": {"test": 1, "base_path": CLI_CASE, "src_type": "png",
              "sequences": {"frames": {"width": 32, "height": 32, "frames": 1, "gop": -1}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    result = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                 *model_args(ckpt)], capsys)
    assert_clear_error(result, "sequence frames", "at least 64x64")


@pytest.mark.parametrize("tool, flag, value, message", [
    (encode, "--ip", 10_000_000_000, "--ip"),
    (encode, "--ip", -2 ** 31 - 1, "--ip"),
    (encode, "--refresh_interval", 2 ** 40, "--refresh_interval"),
    (decode, "--refresh_interval", 2 ** 32, "--refresh_interval"),
])
def test_header_fields_are_checked_when_the_arguments_are_parsed(tmp_path, capsys, tool, flag, value, message):
    """Refused before any checkpoint is read (these do not exist)."""
    missing = ["--i_frame_model_path", tmp_path / "none_i", "--p_frame_model_path", tmp_path / "none_p", "--cuda", "0"]
    args = (["-i", FRAMES, "--width", 128, "--height", 128, "-q", 1, "-b", tmp_path / "s.sevc"] if tool is encode
            else ["-b", tmp_path / "s.sevc", "-o", tmp_path / "out"])
    assert_clear_error(cli(tool.main, [*args, *missing, flag, value], capsys), message, str(value))


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header declares width x height (its pixel data is a few bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_a_png_declaring_a_huge_size_is_one_line(tmp_path, ckpt, capsys):
    (tmp_path / "frames").mkdir()
    _png_header_only(tmp_path / "frames" / "im00001.png", 60000, 60000)
    result = encoder(tmp_path, ckpt, capsys, "-q", 1, source=tmp_path / "frames")
    assert_clear_error(result, "im00001.png", "60000x60000")


@pytest.mark.parametrize("names, message", [
    ("gap", "im00003.png"),
    ("folder", "im00002.png is a folder"),
    ("fifo", "im00002.png is a FIFO"),
])
def test_frames_that_would_shorten_the_sequence_are_reported(tmp_path, ckpt, capsys, names, message):
    import os

    folder = tmp_path / "frames"
    folder.mkdir()
    for k in (1, 2, 4) if names == "gap" else (1, 3):
        shutil.copy(FRAMES / f"im{k:05d}.png", folder / f"im{k:05d}.png")
    if names == "folder":
        (folder / "im00002.png").mkdir()
    elif names == "fifo":
        os.mkfifo(folder / "im00002.png")
    assert_clear_error(encoder(tmp_path, ckpt, capsys, "-q", 1, "-f", -1, source=folder), message)


@pytest.mark.parametrize("image_format", ["JPEG", "GIF", "TIFF"])
def test_other_images_named_png_are_refused(tmp_path, image_format):
    from PIL import Image

    from sevc.errors import FrameError
    from sevc.io.frames import read_png

    Image.open(FRAMES / "im00001.png").convert("RGB").save(tmp_path / "im00001.png", format=image_format)
    with pytest.raises(FrameError, match=f"{image_format} image"):
        read_png(tmp_path / "im00001.png")


def _save_state(path, modify, which="i_frame"):
    import torch

    from sevc.models.intra import IntraNoAR
    from sevc.models.sevc import SEVC

    torch.manual_seed(0)
    state = (IntraNoAR() if which == "i_frame" else SEVC()).state_dict()
    torch.save(modify(state), path)


@pytest.mark.parametrize("modify, message", [
    (lambda s: {1: v for v in s.values()}, "keys"),
    (lambda s: {**s, 7: next(iter(s.values()))}, "keys"),
    (lambda s: {k: v.to(dtype=__import__("torch").complex64) if v.is_floating_point() else v for k, v in s.items()},
     "complex"),
    (lambda s: {k: v * 0 for k, v in s.items()}, "q_scale"),
])
def test_checkpoints_of_the_wrong_kind_give_one_line(tmp_path, ckpt, capsys, modify, message):
    path = tmp_path / "i.pth.tar"
    _save_state(path, modify)
    args = ["-i", FRAMES, "--width", 128, "--height", 128, "-q", 1, "-f", 1, "-b", tmp_path / "out.sevc", "--cuda",
            "0", "--i_frame_model_path", path, "--p_frame_model_path", ckpt / "p.pth.tar"]
    status, _, err = cli(encode.main, args, capsys)
    assert_clear_error((status, "", err), message)
    assert "Warning" not in err and len(err.strip().splitlines()) == 1, err


class _Exploit:
    def __reduce__(self):
        import os

        return os.system, ("echo code from a checkpoint ran",)


@pytest.mark.parametrize("raw", [False, True])
def test_a_malicious_pickle_is_reported_as_refused(tmp_path, ckpt, capsys, raw):
    import pickle

    import torch

    path = tmp_path / "evil.pth.tar"
    if raw:
        path.write_bytes(pickle.dumps({"weights": _Exploit()}))
    else:
        torch.save({"weights": _Exploit()}, path)
    args = ["-i", FRAMES, "--width", 128, "--height", 128, "-q", 1, "-b", tmp_path / "out.sevc", "--cuda", "0",
            "--i_frame_model_path", path, "--p_frame_model_path", ckpt / "p.pth.tar"]
    status, out, err = cli(encode.main, args, capsys)
    assert_clear_error((status, out, err), "system", "weights_only")
    assert "code from a checkpoint ran" not in out + err


def test_demo_q_out_of_range(tmp_path, capsys):
    from sevc.cli import demo

    result = cli(demo.main, ["-q", 64, "-o", tmp_path / "demo", "--ckpt_dir", tmp_path], capsys)
    assert_clear_error(result, "-q", "0..63")
    assert not (tmp_path / "demo").exists()


def test_parent_folders_of_a_failed_output_are_removed(tmp_path, ckpt, capsys):
    (tmp_path / "bad.sevc").write_bytes(b"SEVC" + bytes(60))
    result = cli(decode.main, ["-b", tmp_path / "bad.sevc", "-o", tmp_path / "newA" / "newB" / "out",
                               *model_args(ckpt)], capsys)
    assert_clear_error(result)
    missing = ["--i_frame_model_path", tmp_path / "none", "--p_frame_model_path", ckpt / "p.pth.tar", "--cuda", "0"]
    for fmt in ("sevc", "official"):
        result = cli(encode.main, ["-i", FRAMES, "--width", 128, "--height", 128, "-q", 1, "--format", fmt,
                                   "-b", tmp_path / "newA" / "newB" / "s", *missing], capsys)
        assert_clear_error(result, "checkpoint not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.sevc"]


def _broken_png(path) -> None:
    """A PNG whose header is sound (128x128 RGB) and whose pixel data is cut short."""
    data = (FRAMES / "im00001.png").read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_test_py_writes_no_results_when_every_job_fails(tmp_path, ckpt, capsys):
    (tmp_path / "seq").mkdir()
    _broken_png(tmp_path / "seq" / "im00001.png")
    config = {"root_path": str(tmp_path), "test_classes": {"x": {"test": 1, "base_path": ".", "src_type": "png",
              "sequences": {"seq": {"width": 128, "height": 128, "frames": 1, "gop": -1}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    status, out, err = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                           "--rate_num", 2, "--i_frame_q_indexes", 1, 2, *model_args(ckpt)], capsys)
    assert status == 1 and "x/seq" in err and not (tmp_path / "r.json").exists()
    assert "tested 0 frames" in out and "0 of 2" in out and "no results written" in out


def test_test_py_checks_every_sequence_before_the_first_job(tmp_path, ckpt, capsys):
    good = {"width": 128, "height": 128, "frames": 1, "gop": -1}
    sequences = {"frames": good, "missing": good, "short": {**good, "frames": 9}, "wide": {**good, "width": 192}}
    (tmp_path / "short").mkdir()
    shutil.copy(FRAMES / "im00001.png", tmp_path / "short" / "im00001.png")
    shutil.copytree(FRAMES, tmp_path / "wide")
    shutil.copytree(FRAMES, tmp_path / "frames")
    config = {"root_path": str(tmp_path), "test_classes": {"x": {"test": 1, "base_path": ".", "src_type": "png",
              "sequences": sequences}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    status, out, err = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                           *model_args(ckpt)], capsys)
    assert_clear_error((status, out, err), "missing", "short", "wide")
    assert "tested" not in out and not (tmp_path / "r.json").exists()


def test_test_py_progress_names_rates_by_their_q_index(tmp_path, ckpt, capsys, monkeypatch):
    import sys

    from tqdm import tqdm

    from sevc.cli import jobs

    config = {"root_path": str(FIXTURES), "test_classes": {"x": {"test": 1, "base_path": CLI_CASE, "src_type": "png",
              "sequences": {"frames": {"width": 128, "height": 128, "frames": 1, "gop": -1}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    # the bar as on a terminal (it is off when stderr is not one, as here)
    monkeypatch.setattr(jobs, "progress", lambda total, unit, quiet=False, initial=0: tqdm(
        total=total, unit=unit, file=sys.stderr, initial=initial))
    status, _, err = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                         "--rate_num", 2, "--i_frame_q_indexes", 0, 63, *model_args(ckpt)], capsys)
    assert status == 0 and "frames q63" in err and "frames q1" not in err
