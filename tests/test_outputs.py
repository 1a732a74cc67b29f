"""Outputs never destroy what sevc did not write: foreign files, devices, FIFOs, links, the inputs;
SIGTERM cleans up like SIGINT."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sevc.cli import decode, encode, evaluate
from sevc.io.outputs import OutputError, check_file_path
from sevc.io.frames import read_png_folder, rgb_to_yuv420

from conftest import CLI_CASE, REPO, assert_clear_error, cli, model_args
from reference import FIXTURES

FRAMES = FIXTURES / CLI_CASE / "frames"


def _encode(capsys, ckpt, out, *extra, source=FRAMES, frames=2):
    return cli(encode.main, ["-i", source, "--width", 128, "--height", 128, "-q", 20, "-f", frames, "-b", out,
                             "--numerics", "float", *model_args(ckpt), *extra], capsys)


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_official_output_folder_with_foreign_files(tmp_path, ckpt, capsys):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "7.bin").write_bytes(b"also mine")
    before = _tree(folder)
    assert_clear_error(_encode(capsys, ckpt, folder, "--format", "official"), "notes.txt", "--overwrite")
    assert _tree(folder) == before
    status, _, _ = _encode(capsys, ckpt, folder, "--format", "official", "--overwrite")
    assert status == 0
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in folder.iterdir()) == ["0.bin", "1.bin", "headers.bin", "notes.txt"]


def test_official_output_in_the_working_folder(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.bin").write_bytes(b"precious")
    assert_clear_error(_encode(capsys, ckpt, ".", "--format", "official"), "thesis.bin")
    assert (tmp_path / "thesis.bin").read_bytes() == b"precious"


def test_rewriting_an_own_official_stream_removes_its_stale_frames(tmp_path, ckpt, capsys):
    folder = tmp_path / "bin"
    assert _encode(capsys, ckpt, folder, "--format", "official", frames=3)[0] == 0
    assert _encode(capsys, ckpt, folder, "--format", "official", frames=2)[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["0.bin", "1.bin", "headers.bin"]


def test_decoder_output_folder_with_foreign_files(tmp_path, ckpt, capsys):
    stream = tmp_path / "s.sevc"
    assert _encode(capsys, ckpt, stream)[0] == 0
    out = tmp_path / "out"
    (out / "full").mkdir(parents=True)
    (out / "full" / "holiday.jpg").write_bytes(b"photo")
    (out / "full" / "im00009.png").write_bytes(b"an old frame")
    before = _tree(out)
    assert_clear_error(cli(decode.main, ["-b", stream, "-o", out, *model_args(ckpt)], capsys), "holiday.jpg")
    assert _tree(out) == before
    status, _, _ = cli(decode.main, ["-b", stream, "-o", out, "--overwrite", *model_args(ckpt)], capsys)
    assert status == 0
    assert (out / "full" / "holiday.jpg").read_bytes() == b"photo"
    assert sorted(p.name for p in (out / "full").iterdir()) == ["holiday.jpg", "im00001.png", "im00002.png"]
    # decoding again into its own output needs no --overwrite; a stale layer is removed
    status, _, _ = cli(decode.main, ["-b", stream, "-o", tmp_path / "again", *model_args(ckpt)], capsys)
    status, _, _ = cli(decode.main, ["-b", stream, "-o", tmp_path / "again", "--skim", *model_args(ckpt)], capsys)
    assert status == 0 and sorted(p.name for p in (tmp_path / "again").iterdir()) == ["skim"]


def test_fifo_device_and_link_outputs(tmp_path, ckpt, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for extra in ([], ["--overwrite"]):
        assert_clear_error(_encode(capsys, ckpt, fifo, *extra), "is a FIFO")
    with pytest.raises(OutputError, match="is a device"):
        check_file_path("/dev/null", overwrite=True)
    target = tmp_path / "target.txt"
    target.write_text("kept")
    link = tmp_path / "link.sevc"
    link.symlink_to(target)
    assert_clear_error(_encode(capsys, ckpt, link), "symbolic link")
    assert _encode(capsys, ckpt, link, "--overwrite")[0] == 0
    assert target.read_text() == "kept" and not link.is_symlink() and link.read_bytes()[:4] == b"SEVC"


def test_a_file_sevc_did_not_write_is_replaced_only_when_asked(tmp_path, ckpt, capsys):
    other = tmp_path / "report.pdf"
    other.write_bytes(b"%PDF-1.7")
    assert_clear_error(_encode(capsys, ckpt, other), "not a file sevc wrote")
    assert other.read_bytes() == b"%PDF-1.7"
    assert _encode(capsys, ckpt, other, "--overwrite")[0] == 0
    assert _encode(capsys, ckpt, other)[0] == 0  # now a sevc stream: replaced without asking


def test_the_input_is_never_an_output(tmp_path, ckpt, capsys):
    clip = tmp_path / "clip.yuv"
    clip.write_bytes(b"".join(rgb_to_yuv420(x) for x in read_png_folder(FRAMES, 128, 128, 2)))
    before = clip.read_bytes()
    assert_clear_error(_encode(capsys, ckpt, clip, "--overwrite", source=clip), "one of the inputs")
    assert clip.read_bytes() == before
    config = tmp_path / "config.json"
    config.write_text('{"root_path": ".", "test_classes": {}}')
    result = cli(evaluate.main, ["--test_config", config, "--output_path", config, "--overwrite", *model_args(ckpt)],
                 capsys)
    assert_clear_error(result, "one of the inputs")


@pytest.mark.parametrize("tool", ["encoder", "decoder"])
def test_sigterm_removes_partial_outputs(tmp_path, ckpt, tool):
    stream = tmp_path / "s.sevc"
    common = ["--i_frame_model_path", str(ckpt / "i.pth.tar"), "--p_frame_model_path", str(ckpt / "p.pth.tar"),
              "--cuda", "0"]
    encoder = [sys.executable, str(REPO / "encoder.py"), "-i", str(FRAMES), "--width", "128", "--height", "128",
               "-q", "20", "-b", str(stream), "--numerics", "float", *common]
    if tool == "decoder":
        subprocess.run(encoder, check=True, capture_output=True)
        command = [sys.executable, str(REPO / "decoder.py"), "-b", str(stream), "-o", str(tmp_path / "out"), *common]
        watched = tmp_path
    else:
        command, watched = encoder, tmp_path
    before = set(watched.iterdir())
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any(p.name.endswith(".partial") for p in watched.iterdir()):
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err and err.strip().endswith("terminated")
    assert set(watched.iterdir()) == before
