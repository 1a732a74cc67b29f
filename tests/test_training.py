"""Training: every stage runs, trains exactly its parameters, resumes exactly, and its
checkpoints load in the tools. Small crops from ../shared/data on the CPU."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sevc.checkpoint import read_state_dict
from sevc.cli import encode, evaluate, train as train_cli
from sevc.intra import IntraNoAR
from sevc.sevc_model import SEVC
from sevc.training.data import SequenceFolder, Vimeo90k
from sevc.training.losses import Objective
from sevc.training.stages import OBJECTIVES, STAGES, UNUSED_ENTRIES, StageModel, trained_names
from sevc.training.trainer import load_config, train

from conftest import CLI_CASE, FIXTURES, REPO, assert_clear_error, case_info, cli, requires_reference, stand_in_model

DATA = REPO.parent / "shared" / "data" / "png"
requires_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"sample video not found at {DATA}")
pytestmark = requires_data
CROP = [64, 64]


def small_config(stage: str, **changes) -> dict:
    settings = {"data": {"type": "folders", "root": str(DATA)}, "crop": CROP, "batch_size": 2, "steps": 1,
                "num_workers": 0, "sequence_length": 1 if stage == "i_frame" else 3, "log_every": 1,
                "init": {"i_frame": None, "p_frame": None}, **changes}
    return load_config(REPO / "train_configs" / f"{stage}.json", settings)


def initial_weights(seed: int = 0):
    torch.manual_seed(seed)
    return IntraNoAR().state_dict(), SEVC().state_dict()


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_trains_its_parameters_and_nothing_else(stage, tmp_path):
    last = train(small_config(stage), tmp_path)
    assert last["step"] == 1 and torch.isfinite(torch.tensor(last["loss"]))
    assert ("psnr" if stage != "base" else "base_psnr") in last
    i_before, p_before = initial_weights()
    before = i_before if stage == "i_frame" else p_before
    after = read_state_dict(tmp_path / ("i_frame.pth.tar" if stage == "i_frame" else "p_frame.pth.tar"))
    assert list(after) == list(before)  # the official checkpoints' keys, in order
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    model = IntraNoAR() if stage == "i_frame" else SEVC()
    trained = set(trained_names(stage, model))
    assert changed and changed <= trained
    frozen = read_state_dict(tmp_path / ("p_frame.pth.tar" if stage == "i_frame" else "i_frame.pth.tar"))
    other = p_before if stage == "i_frame" else i_before
    assert all(torch.equal(frozen[k], other[k]) for k in other)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1 and log[-1]["anchor"] == 0


def test_joint_gradients_reach_every_p_frame_parameter():
    """A 6-frame clip reaches every frame-index and queue-fullness branch: every trained SEVC
    parameter gets a gradient, and only the checkpoint entries no computation uses get none."""
    torch.manual_seed(0)
    data = SequenceFolder(DATA, 6, tuple(CROP))
    model = StageModel("joint", IntraNoAR(), SEVC(), Objective(OBJECTIVES["joint"])).train()
    loss, _ = model(data[0][None], 3)
    loss.backward()
    with_grad = {n for n, p in model.p_frame.named_parameters() if p.grad is not None}
    assert with_grad == set(trained_names("joint", model.p_frame))
    assert all(n.startswith(UNUSED_ENTRIES) for n, _ in model.p_frame.named_parameters() if n not in with_grad)
    assert all(p.grad is None for p in model.i_frame.parameters())


def test_detach_every_cuts_the_gradient_through_the_references():
    clip = SequenceFolder(DATA, 3, tuple(CROP))[0][None].requires_grad_(True)
    for detach_every, reaches_frame_1 in ((0, True), (1, False)):
        torch.manual_seed(0)
        model = StageModel("base", IntraNoAR(), SEVC(), Objective(OBJECTIVES["base"]), detach_every).train()
        _, terms = model(clip, 0)
        (grad,) = torch.autograd.grad(terms[1].base_rate, clip)  # the rate of frame 2
        assert bool(grad[:, 1].abs().sum() > 0) == reaches_frame_1


def test_resume_continues_from_the_same_step_and_state(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(small_config("base", steps=3, save_every=1), straight)
    train(small_config("base", steps=1, save_every=1), resumed)
    train(small_config("base", steps=3, save_every=1), resumed, resume=True)
    for name in ("i_frame.pth.tar", "p_frame.pth.tar"):
        a, b = read_state_dict(straight / name), read_state_dict(resumed / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == [1, 2, 3]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]


@requires_reference
def test_trained_checkpoints_load_in_test_py_and_encoder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(small_config("base"), run_dir)
    models = ["--i_frame_model_path", run_dir / "i_frame.pth.tar", "--p_frame_model_path",
              run_dir / "p_frame.pth.tar", "--cuda", "0"]
    config = {"root_path": str(FIXTURES), "test_classes": {"fixtures": {"test": 1, "base_path": CLI_CASE,
              "src_type": "png", "sequences": {"frames": {"width": 128, "height": 128, "frames": 2, "gop": -1}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    status, _, _ = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                       *models], capsys)
    assert status == 0
    status, _, _ = cli(encode.main, ["-i", FIXTURES / CLI_CASE / "frames", "--width", 128, "--height", 128, "-q", 5,
                                     "-f", 2, "-b", tmp_path / "s.sevc", *models], capsys)
    assert status == 0 and (tmp_path / "s.sevc").stat().st_size > 0


@requires_reference
def test_training_bits_track_the_real_stream():
    """On one frame, with the fixture weights and the tables built: the training-time rate (noisy
    latents) is within 5% of the real stream's size, the test-path estimate within 3%."""
    from sevc.frames import read_png

    model = stand_in_model(IntraNoAR(), "i_frame", case_info(CLI_CASE)["seed"])
    model.update(force=True)
    x = read_png(DATA / "bikes_640x272" / "im00001.png")[..., :128, :256]
    for anchor in (0, 3):
        with torch.no_grad():
            real = len(model.compress(x, True, anchor)["bit_stream"]) * 8
            estimated = model(x, True, anchor)["bit"].item()
            model.train()
            torch.manual_seed(0)
            training = model(x, True, anchor)["bit"].item()
            model.eval()
        assert abs(training / real - 1) < 0.05, (training, real)
        assert abs(estimated / real - 1) < 0.03, (estimated, real)


def test_vimeo90k_layout(tmp_path):
    source = DATA / "bikes_640x272"
    for clip in ("00001/0001", "00001/0002"):
        folder = tmp_path / "sequences" / clip
        folder.mkdir(parents=True)
        for k in range(7):
            shutil.copy(source / f"im{k + 1:05d}.png", folder / f"im{k + 1}.png")
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    data = Vimeo90k(tmp_path, length=6, crop=(64, 96))
    assert len(data) == 2 and data[1].shape == (6, 3, 64, 96)
    assert torch.equal(data[0], data[0])  # crops are a function of (seed, epoch, index)
    data.set_epoch(1)
    assert data[0].shape == (6, 3, 64, 96)


def test_train_py_bad_configuration(tmp_path, capsys):
    config = REPO / "train_configs" / "base.json"
    result = cli(train_cli.main, ["--config", config, "-o", tmp_path, "--set", "crop=[60,64]"], capsys)
    assert_clear_error(result, "multiples of 16")
    result = cli(train_cli.main, ["--config", config, "-o", tmp_path, "--set", f"data.root={tmp_path / 'none'}",
                                  "data.type=folders"], capsys)
    assert_clear_error(result, "training data folder not found")
    result = cli(train_cli.main, ["--config", config, "-o", tmp_path / "new", "--resume"], capsys)
    assert_clear_error(result, "nothing to resume")


def test_torchrun_two_processes(tmp_path):
    """train.py under torchrun (DDP, gloo on the CPU): 2 processes share a batch of 2."""
    settings = [f"data.root={DATA}", "data.type=folders", "crop=[64,64]", "batch_size=2", "steps=1",
                "num_workers=0", "sequence_length=2", "init.i_frame=null"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(REPO / "train.py"), "--config", str(REPO / "train_configs" / "base.json"), "-o", str(tmp_path),
               "--set", *settings]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1
    assert list(read_state_dict(tmp_path / "p_frame.pth.tar")) == list(SEVC().state_dict())


def test_yuv_sequence_folder(tmp_path):
    from sevc.frames import read_png_folder, rgb_to_yuv420

    frames = list(read_png_folder(DATA / "carphone_176x144", 176, 144, 5))
    (tmp_path / "clip.yuv").write_bytes(b"".join(rgb_to_yuv420(x) for x in frames))
    data = SequenceFolder(tmp_path, length=3, crop=(64, 64), src_type="yuv420", width=176, height=144)
    assert len(data) == 1 and data[0].shape == (3, 3, 64, 64)
