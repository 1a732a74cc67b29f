"""Outputs never destroy what sevc did not write: foreign files, devices, FIFOs, links, the inputs;
SIGTERM cleans up like SIGINT."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sevc.cli import decode, encode, evaluate
from sevc.cli.common import run
from sevc.io.outputs import MANIFEST, OutputError, check_file
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
    # a frame file sevc did not write would become part of the stream: in the way even with --overwrite
    assert_clear_error(_encode(capsys, ckpt, folder, "--format", "official", "--overwrite"), "7.bin", "in the way")
    assert _tree(folder) == before
    (folder / "7.bin").unlink()
    status, _, _ = _encode(capsys, ckpt, folder, "--format", "official", "--overwrite")
    assert status == 0
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "0.bin", "1.bin", "headers.bin", "notes.txt"]


def test_official_output_in_the_working_folder(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.bin").write_bytes(b"precious")
    assert_clear_error(_encode(capsys, ckpt, ".", "--format", "official"), "thesis.bin")
    assert (tmp_path / "thesis.bin").read_bytes() == b"precious"


def test_rewriting_an_own_official_stream_removes_its_stale_frames(tmp_path, ckpt, capsys):
    folder = tmp_path / "bin"
    assert _encode(capsys, ckpt, folder, "--format", "official", frames=3)[0] == 0
    assert _encode(capsys, ckpt, folder, "--format", "official", frames=2)[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "0.bin", "1.bin", "headers.bin"]


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
    result = cli(decode.main, ["-b", stream, "-o", out, "--overwrite", *model_args(ckpt)], capsys)
    assert_clear_error(result, "im00009.png", "in the way")  # named like a frame, but not sevc's
    assert _tree(out) == before
    (out / "full" / "im00009.png").unlink()
    status, _, _ = cli(decode.main, ["-b", stream, "-o", out, "--overwrite", *model_args(ckpt)], capsys)
    assert status == 0
    assert (out / "full" / "holiday.jpg").read_bytes() == b"photo"
    assert sorted(p.name for p in (out / "full").iterdir()) == ["holiday.jpg", "im00001.png", "im00002.png"]
    # decoding again into its own output needs no --overwrite; a stale layer is removed
    status, _, _ = cli(decode.main, ["-b", stream, "-o", tmp_path / "again", *model_args(ckpt)], capsys)
    status, _, _ = cli(decode.main, ["-b", stream, "-o", tmp_path / "again", "--skim", *model_args(ckpt)], capsys)
    assert status == 0 and sorted(p.name for p in (tmp_path / "again").iterdir()) == [MANIFEST, "skim"]


def test_fifo_device_and_link_outputs(tmp_path, ckpt, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for extra in ([], ["--overwrite"]):
        assert_clear_error(_encode(capsys, ckpt, fifo, *extra), "is a FIFO")
    with pytest.raises(OutputError, match="is a device"):
        check_file("/dev/null", overwrite=True)
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
    config.write_text(json.dumps({"root_path": str(FIXTURES), "test_classes": {"x": {
        "test": 1, "base_path": CLI_CASE, "src_type": "png",
        "sequences": {"frames": {"width": 128, "height": 128, "frames": 1, "gop": -1}}}}}))
    result = cli(evaluate.main, ["--test_config", config, "--output_path", config, "--overwrite", *model_args(ckpt)],
                 capsys)
    assert_clear_error(result, "one of the inputs")


def _script(name: str, ckpt: Path, *args) -> list:
    """The command line running the repository's `name` with the stand-in checkpoints."""
    return [sys.executable, str(REPO / name), *map(str, args), *map(str, model_args(ckpt))]


def _encoder_command(ckpt: Path, stream: Path) -> list:
    return _script("encoder.py", ckpt, "-i", FRAMES, "--width", 128, "--height", 128, "-q", 20, "-b", stream,
                   "--numerics", "float")


def _interrupt_while_writing(command, watched: Path, signals, pause: float = 0.02):
    """Run `command`, send `signals` (one after another) once a partial output appears in `watched`:
    (exit status, stderr)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any(p.name.endswith(".partial") for p in watched.iterdir()):
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    for signum in signals:
        process.send_signal(signum)
        time.sleep(pause)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


@pytest.mark.parametrize("tool", ["encoder", "decoder"])
def test_sigterm_removes_partial_outputs(tmp_path, ckpt, tool):
    stream = tmp_path / "s.sevc"
    command = _encoder_command(ckpt, stream)
    if tool == "decoder":
        subprocess.run(command, check=True, capture_output=True)
        command = _script("decoder.py", ckpt, "-b", stream, "-o", tmp_path / "out")
    before = set(tmp_path.iterdir())
    status, err = _interrupt_while_writing(command, tmp_path, [signal.SIGTERM])
    assert status == 143, err
    assert "Traceback" not in err and err.strip().endswith("terminated")
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize("signals", [[signal.SIGHUP], [signal.SIGQUIT], [signal.SIGUSR1],
                                     [signal.SIGTERM] * 2, [signal.SIGINT] * 3])
def test_other_and_repeated_signals_remove_partial_outputs(tmp_path, ckpt, signals):
    status, err = _interrupt_while_writing(_encoder_command(ckpt, tmp_path / "s.sevc"), tmp_path, signals)
    assert status == 128 + signals[0], err
    assert "Traceback" not in err and err.strip().splitlines()[-1] in ("interrupted", "terminated"), err
    assert list(tmp_path.iterdir()) == []


def test_sigint_while_the_tool_is_starting(tmp_path):
    """Ctrl-C while the modules load: 'interrupted', no traceback."""
    process = subprocess.Popen([sys.executable, "-X", "importtime", str(REPO / "encoder.py"), "--help"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "torch" in line:
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"


# Ownership by record: a file is sevc's because sevc listed it when it wrote it, not because of its name.

@pytest.fixture(scope="module")
def stream(ckpt, tmp_path_factory) -> Path:
    """A 3-frame float sevc stream of the case."""
    path = tmp_path_factory.mktemp("stream") / "s.sevc"
    args = ["-i", FRAMES, "--width", 128, "--height", 128, "-q", 20, "-f", 3, "-b", path, "--numerics", "float",
            *model_args(ckpt)]
    assert run(encode.main, [str(a) for a in args]) == 0
    return path


def _decode(capsys, ckpt, stream, out, *extra):
    return cli(decode.main, ["-b", stream, "-o", out, *model_args(ckpt), *extra], capsys)


def _user_frames(folder: Path, count: int) -> Path:
    """`count` user frames im00001.png ... in `folder` (copies of the case's frames, cycled)."""
    folder.mkdir(parents=True)
    for k in range(count):
        shutil.copy(FRAMES / f"im{k % 5 + 1:05d}.png", folder / f"im{k + 1:05d}.png")
    return folder


def test_decoder_never_writes_its_input_frames_inside_the_output(tmp_path, ckpt, stream, capsys):
    project = tmp_path / "P"
    _user_frames(project / "full", 4)
    before = _tree(project)
    for extra in ([], ["--overwrite"]):
        assert_clear_error(_decode(capsys, ckpt, stream, project, "-i", project / "full", *extra), "im00001.png")
        assert _tree(project) == before


def test_decoder_never_writes_its_yuv_input_inside_the_output(tmp_path, ckpt, stream, capsys):
    folder = tmp_path / "Y"
    folder.mkdir()
    (folder / "full.yuv").write_bytes(b"".join(rgb_to_yuv420(x) for x in read_png_folder(FRAMES, 128, 128, 3)))
    before = _tree(folder)
    for extra in ([], ["--overwrite"]):
        result = _decode(capsys, ckpt, stream, folder, "-i", folder / "full.yuv", "--yuv", *extra)
        assert_clear_error(result, "full.yuv")
        assert _tree(folder) == before


def test_decoder_keeps_user_frames_named_like_its_own(tmp_path, ckpt, stream, capsys):
    project = tmp_path / "project"
    _user_frames(project / "full", 7)
    before = _tree(project)
    for extra in ([], ["--overwrite"]):
        assert_clear_error(_decode(capsys, ckpt, stream, project, *extra), "im00001.png")
        assert _tree(project) == before


def test_decoding_again_replaces_only_what_sevc_wrote(tmp_path, ckpt, stream, capsys):
    out = tmp_path / "out"
    assert _decode(capsys, ckpt, stream, out)[0] == 0
    (out / "notes.txt").write_text("mine")
    assert_clear_error(_decode(capsys, ckpt, stream, out), "notes.txt", "--overwrite")
    assert _decode(capsys, ckpt, stream, out, "--overwrite", "--skim")[0] == 0
    assert (out / "notes.txt").read_text() == "mine" and not (out / "full").exists()
    (out / "notes.txt").unlink()
    (out / "skim" / "im00002.png").write_bytes(b"edited by the user")
    assert_clear_error(_decode(capsys, ckpt, stream, out), "im00002.png", "changed")
    assert (out / "skim" / "im00002.png").read_bytes() == b"edited by the user"


def test_encoder_replaces_only_a_valid_sevc_stream(tmp_path, ckpt, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"SEVC: things to remember about the codec")
    assert_clear_error(_encode(capsys, ckpt, notes, frames=1), "not a file sevc wrote")
    assert notes.read_bytes() == b"SEVC: things to remember about the codec"


def test_encoder_never_replaces_an_input_frame(tmp_path, ckpt, capsys):
    frames = _user_frames(tmp_path / "F", 2)
    before = _tree(frames)
    os.link(frames / "im00002.png", tmp_path / "linked.sevc")
    for out in (frames / "im00001.png", tmp_path / "linked.sevc"):
        assert_clear_error(_encode(capsys, ckpt, out, "--overwrite", source=frames, frames=1), "input")
    assert _tree(frames) == before


def test_test_py_replaces_only_its_own_result_files(tmp_path, ckpt, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"root_path": str(FIXTURES), "test_classes": {"x": {
        "test": 1, "base_path": CLI_CASE, "src_type": "png",
        "sequences": {"frames": {"width": 128, "height": 128, "frames": 1, "gop": -1}}}}}))
    record = {"ave_all_frame_bpp": 0.1, "ave_all_frame_psnr": 30.0}
    others = {"settings.json": {"lr": 1}, "vtm.json": {"UVG": {"Beauty": {"000": record}}}, "empty.json": {}}
    for name, content in others.items():
        (tmp_path / name).write_text(json.dumps(content))
        args = ["--test_config", config, "--output_path", tmp_path / name, "--rate_num", 1,
                "--i_frame_q_indexes", 30, *model_args(ckpt)]
        assert_clear_error(cli(evaluate.main, args, capsys), name, "--overwrite")
        assert json.loads((tmp_path / name).read_text()) == content
    own = ["--test_config", config, "--output_path", tmp_path / "r.json", "--rate_num", 1, "--i_frame_q_indexes", 30,
           *model_args(ckpt)]
    assert cli(evaluate.main, own, capsys)[0] == 0
    assert cli(evaluate.main, own, capsys)[0] == 0  # its own result file: replaced without asking


def test_bd_rate_keeps_a_users_plot(tmp_path, capsys):
    from sevc.cli import bdrate

    from test_rd_report import results

    for name, factor in (("vtm", 1.0), ("ours", 0.7)):
        (tmp_path / f"{name}.json").write_text(json.dumps(results(factor)))
    report = tmp_path / "rep2"
    report.mkdir()
    (report / "rd_MyPlot_psnr.png").write_bytes(b"my plot")
    args = ["--anchor", f"VTM={tmp_path / 'vtm.json'}", "--test", f"SEVC={tmp_path / 'ours.json'}", "-o", report]
    assert_clear_error(cli(bdrate.main, args, capsys), "rd_MyPlot_psnr.png")
    assert cli(bdrate.main, args + ["--overwrite"], capsys)[0] == 0
    assert cli(bdrate.main, args + ["--overwrite"], capsys)[0] == 0
    assert (report / "rd_MyPlot_psnr.png").read_bytes() == b"my plot" and (report / "bd_rate.md").is_file()


# Property: no tool ever changes or removes a file it did not write, whatever a folder holds.

USER_NAMES = ["im00001.png", "im00002.png", "full/im00001.png", "full/im00004.png", "skim/im00001.png", "full.yuv",
              "0.bin", "3.bin", "headers.bin", "bd_rate.json", "bd_rate.md", "rd_UVG_psnr.png", "config.json",
              "log.jsonl", "i_frame.pth.tar", "train_state.pt", "notes.txt", "r.json", "s.sevc", "data/x.bin",
              MANIFEST]
USER_CONTENTS = [b"SEVC\x02", b"{}", b'{"UVG": {"Beauty": {}}}', b'{"kind": "a decoded video", "files": {}}',
                 b"\x89PNG\r\n\x1a\n", b"PK\x03\x04", b""]


def _user_files(folder: Path, rng) -> dict:
    """A few files a user might keep in `folder`, named like sevc's outputs or not: {path: bytes}."""
    for name in rng.sample(USER_NAMES, rng.randint(1, 6)):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.choice(USER_CONTENTS) + rng.randbytes(rng.randint(0, 48)))
    return _tree(folder)


@pytest.fixture(scope="module")
def small_inputs(ckpt, tmp_path_factory) -> Path:
    """A 64x64 one-frame clip, its stream, a test configuration of it and two result files."""
    from PIL import Image

    from test_rd_report import results

    root = tmp_path_factory.mktemp("inputs")
    (root / "clip").mkdir()
    with Image.open(FRAMES / "im00001.png") as image:
        image.crop((0, 0, 64, 64)).save(root / "clip" / "im00001.png")
    args = ["-i", root / "clip", "--width", 64, "--height", 64, "-q", 20, "-b", root / "s.sevc", "--numerics", "float",
            *model_args(ckpt)]
    assert run(encode.main, [str(a) for a in args]) == 0
    (root / "c.json").write_text(json.dumps({"root_path": str(root), "test_classes": {"x": {
        "test": 1, "base_path": ".", "src_type": "png",
        "sequences": {"clip": {"width": 64, "height": 64, "frames": 1, "gop": -1}}}}}))
    for name, factor in (("vtm", 1.0), ("ours", 0.8)):
        (root / f"{name}.json").write_text(json.dumps(results(factor)))
    return root


def _tool(name: str, folder: Path, output: Path, inputs: Path, ckpt: Path):
    """(main, arguments) of a tool writing into `folder` (or, for one-file outputs, at `output`)."""
    from sevc.cli import anchors, bdrate, train

    clip = ["-i", inputs / "clip", "--width", 64, "--height", 64, "-q", 20, "--numerics", "float"]
    training = ["--config", REPO / "train_configs" / "i_frame.json", "-o", folder, "--set", "data.type=folders",
                f"data.root={inputs}", "steps=1", "batch_size=1", "crop=[64,64]", "num_workers=0"]
    return {"encoder": (encode.main, [*clip, "-b", output, *model_args(ckpt)]),
            "official": (encode.main, [*clip, "--format", "official", "-b", folder, *model_args(ckpt)]),
            "decoder": (decode.main, ["-b", inputs / "s.sevc", "-o", folder, *model_args(ckpt)]),
            "test.py": (evaluate.main, ["--test_config", inputs / "c.json", "--output_path", output, "--rate_num", 1,
                                        "--i_frame_q_indexes", 30, *model_args(ckpt)]),
            "bd_rate": (bdrate.main, ["--anchor", f"VTM={inputs / 'vtm.json'}", "--test", inputs / "ours.json",
                                      "-o", folder]),
            "anchors.py": (anchors.main, ["--test_config", inputs / "c.json", "--codec", "x264", "--qp", 30,
                                          "--output_path", output]),
            "train.py": (train.main, training)}[name]


@pytest.mark.parametrize("tool", ["encoder", "official", "decoder", "test.py", "bd_rate", "train.py", "anchors.py"])
def test_no_tool_touches_a_users_files(tmp_path, ckpt, capsys, small_inputs, tool):
    """Each tool, with and without --overwrite, into folders of random user files (seeded): every
    file is left as it was (but the one file named as a one-file output with --overwrite)."""
    import random

    rng = random.Random(tool)
    for round_, overwrite in enumerate((False, True) * 4):
        folder = tmp_path / f"round{round_}"
        before = _user_files(folder, rng)
        output = folder / rng.choice([*(name for name in before if "/" not in name), "new.out"])
        main, args = _tool(tool, folder, output, small_inputs, ckpt)
        status, _, err = cli(main, args + ["--overwrite"] * overwrite, capsys)
        assert status in (0, 1), err
        one_file = tool in ("encoder", "test.py", "anchors.py")
        replaced = str(output.relative_to(folder)) if overwrite and one_file else None
        after = _tree(folder)
        assert {k: v for k, v in after.items() if k in before and k != replaced} == \
            {k: v for k, v in before.items() if k != replaced}, err
