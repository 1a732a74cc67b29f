"""Training: every stage runs, trains exactly its parameters, resumes exactly, and its
checkpoints load in the tools. Small crops of the clips in tests/data/clips on the CPU."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from sevc.errors import TrainingError
from sevc.io.outputs import MANIFEST
from sevc.latent_codecs import use_noisy_rate
from sevc.weights.checkpoint import named_parameters, read_state_dict
from sevc.cli import encode, evaluate, train as train_cli
from sevc.models.intra import IntraNoAR
from sevc.models.rate import Rate
from sevc.models.sevc import SEVC
from sevc.training.data import SequenceFolder, Vimeo90k
from sevc.training.losses import Objective
from sevc.training.stages import (OBJECTIVES, STAGES, StageModel, positions_left_untrained, trained_names,
                                  unused_modules)
from sevc.training.trainer import load_config, train

from conftest import CLI_CASE, CLIPS, REPO, assert_clear_error, cli, stand_in_model
from reference import FIXTURES, case_info

DATA = CLIPS
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


def test_a_diverging_run_stops_with_one_line_and_keeps_the_saved_weights(tmp_path):
    """From fresh weights a huge learning rate sends the loss to NaN within a few steps; training
    stops at the next log or save with a TrainingError (it was a torch.distributions traceback),
    and the weights saved before are not replaced by NaN ones."""
    config = small_config("i_frame", lr=10.0, steps=20, save_every=1, log_every=10)
    with pytest.raises(TrainingError, match=r"the loss is nan at step \d+: training diverged"):
        train(config, tmp_path)
    saved = read_state_dict(tmp_path / "i_frame.pth.tar")
    assert all(bool(torch.isfinite(value).all()) for value in saved.values())


def test_clip_grad_norm_is_checked_and_used(tmp_path):
    with pytest.raises(TrainingError, match="clip_grad_norm must be null or a positive number"):
        small_config("i_frame", clip_grad_norm=0)
    last = train(small_config("i_frame", steps=2, clip_grad_norm=0.5), tmp_path)
    assert last["step"] == 2 and torch.isfinite(torch.tensor(last["loss"]))


def test_a_fresh_model_starts_its_anchors_at_their_lambdas_steps(tmp_path):
    """Fresh q scales are ones: a short run coded every anchor at one rate (measured: 0.539 and
    0.545 bpp for lambda 50 and 400 after 1000 steps). The trained model's anchors now start at
    encoder scales sqrt(lambda / G); decoder scales, anchors without a lambda and the frozen model
    keep theirs."""
    train(small_config("i_frame", steps=1, lr=1e-9, lambdas=[50, 200, 95, 400], anchors=2), tmp_path)
    saved = read_state_dict(tmp_path / "i_frame.pth.tar")
    expected = torch.tensor([0.5 ** 0.5, 2 ** 0.5, 1.0, 1.0])
    assert torch.allclose(saved["q_scale_enc"].flatten(), expected, rtol=1e-4)
    assert torch.allclose(saved["q_scale_dec"].flatten(), torch.ones(4), rtol=1e-4)
    frozen = read_state_dict(tmp_path / "p_frame.pth.tar")
    assert all(bool((frozen[k] == 1).all()) for k in frozen if k.endswith(("q_scale_enc", "q_scale_dec")))


def test_joint_gradients_reach_every_p_frame_parameter():
    """A 6-frame clip reaches every frame-index and queue-fullness branch: every trained SEVC
    parameter gets a gradient, and only the checkpoint entries no computation uses get none."""
    torch.manual_seed(0)
    data = SequenceFolder(DATA, 6, tuple(CROP))
    model = StageModel("joint", IntraNoAR(), SEVC(), Objective(OBJECTIVES["joint"])).train()
    loss, _ = model(data[0][None], 3)
    loss.backward()
    parameters = named_parameters(model.p_frame)
    with_grad = {n for n, p in parameters.items() if p.grad is not None}
    assert with_grad == set(trained_names("joint", model.p_frame))
    unused = {id(p) for module in unused_modules(model.p_frame) for p in module.parameters()}
    assert all(id(p) in unused for n, p in parameters.items() if n not in with_grad)
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
                                     "--numerics", "float", "-f", 2, "-b", tmp_path / "s.sevc", *models], capsys)
    assert status == 0 and (tmp_path / "s.sevc").stat().st_size > 0


def test_training_bits_track_the_real_stream():
    """On one frame, with the fixture weights and the tables built: the training-time rate is
    within 5% of the real stream's size (noisy latents; rounded ones give the test path's
    estimate), the test-path estimate within 3%."""
    from sevc.io.frames import read_png

    model = stand_in_model(IntraNoAR(), "i_frame", case_info(CLI_CASE)["seed"])
    model.update(force=True)
    x = read_png(DATA / "bikes_256x128" / "im00001.png")[..., :128, :256]
    for anchor in (0, 3):
        with torch.no_grad():
            real = len(model.compress(x, rate=Rate.of_anchor(anchor)).payloads[0]) * 8
            estimated = model(x, rate=Rate.of_anchor(anchor)).bits.item()
            model.train()
            rounded = model(x, rate=Rate.of_anchor(anchor)).bits.item()
            use_noisy_rate(model, True)
            torch.manual_seed(0)
            training = model(x, rate=Rate.of_anchor(anchor)).bits.item()
            use_noisy_rate(model, False)
            model.eval()
        assert rounded == estimated
        assert abs(training / real - 1) < 0.05, (training, real)
        assert abs(estimated / real - 1) < 0.03, (estimated, real)


def test_the_first_noisy_rate_steps_train_on_noisy_rates(tmp_path):
    """Runs of 2 steps with noisy_rate_steps 0, 1 and 2: the first step's rate is noisy in the
    runs with 1 and 2 (the same number), rounded in the run with 0; the second step's is noisy
    only in the run with 2, though both started it from the same weights."""
    logged = {}
    for noisy_steps in (0, 1, 2):
        train(small_config("i_frame", steps=2, noisy_rate_steps=noisy_steps), tmp_path / str(noisy_steps))
        logged[noisy_steps] = [json.loads(line)["bpp"] for line in (tmp_path / str(noisy_steps) / "log.jsonl")
                               .read_text().splitlines()]
    assert logged[1][0] == logged[2][0] != logged[0][0]
    assert logged[1][1] != logged[2][1]


def test_short_clips_warn_of_untrained_feature_adaptors(tmp_path, capsys):
    """A P-frame picks its feature adaptor by position: 3-frame clips never train those of
    positions 3 and 5, and the run says so; 6-frame clips train them all."""
    train(small_config("base"), tmp_path)
    assert "P-frames at positions 3, 5 after an I-frame" in capsys.readouterr().err
    assert positions_left_untrained(4) == [5] and positions_left_untrained(6) == []


def vimeo_folder(root, septuplets: int):
    """A tiny Vimeo-90k layout in `root`: `septuplets` crops (80x112) of the 7-frame test clip as
    sequences/00001/000k/im1..7.png, listed in sep_trainlist.txt; returns `root`."""
    names = [f"00001/{k + 1:04d}" for k in range(septuplets)]
    for k, name in enumerate(names):
        folder = root / "sequences" / name
        folder.mkdir(parents=True)
        top, left = (24 * k) % 48, (72 * k) % 144
        for t in range(7):
            with Image.open(DATA / "bikes_256x128" / f"im{t + 1:05d}.png") as image:
                image.crop((left, top, left + 112, top + 80)).save(folder / f"im{t + 1}.png")
    (root / "sep_trainlist.txt").write_text("".join(name + "\n" for name in names))
    return root


def test_vimeo90k_layout(tmp_path):
    vimeo_folder(tmp_path, 2)
    data = Vimeo90k(tmp_path, length=6, crop=(64, 96))
    assert len(data) == 2 and data[1].shape == (6, 3, 64, 96)
    assert torch.equal(data[0], data[0])  # crops are a function of (seed, epoch, index)
    data.set_epoch(1)
    assert data[0].shape == (6, 3, 64, 96)
    assert Vimeo90k(tmp_path, length=1, crop=(64, 64))[0].shape == (1, 3, 64, 64)  # the i_frame stage


def readme_commands():
    """The README's plain per-stage commands, in its order: their arguments after `python train.py`."""
    lines = (REPO / "README.md").read_text().splitlines()
    return [line.split()[2:] for line in lines
            if re.fullmatch(r"python train\.py --config train_configs/\w+\.json +-o runs/\w+", line.strip())]


def snapshot(folder) -> dict:
    """{relative path: bytes} of every file below `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_readme_commands_run_every_stage_config(tmp_path, monkeypatch, capsys):
    """Each of the README's stage commands, in its order and with its arguments, run from a folder
    holding train_configs/: the configs' init paths chain runs/i_frame -> runs/base -> runs/augment
    as they are; --set only shrinks the run and points it at tiny data (Vimeo-90k layout; PNG
    sequences for joint)."""
    commands = readme_commands()
    assert [args[1] for args in commands] == [f"train_configs/{stage}.json" for stage in STAGES]
    vimeo = vimeo_folder(tmp_path / "vimeo", 2)
    (tmp_path / "train_configs").symlink_to(REPO / "train_configs")
    monkeypatch.chdir(tmp_path)
    tiny = ["steps=1", "batch_size=1", "crop=[64,64]", "num_workers=0"]
    data = {stage: [f"data.root={vimeo}"] for stage in STAGES}
    data["joint"] = [f"data.root={DATA}", "sequence_length=3"]
    for args, stage in zip(commands, STAGES):
        status, out, err = cli(train_cli.main, [*args, "--set", *tiny, *data[stage]], capsys)
        assert status == 0, err
        assert "last step: step 1" in out
        assert set(os.listdir(f"runs/{stage}")) == {"config.json", "i_frame.pth.tar", "p_frame.pth.tar",
                                                      "train_state.pt", "log.jsonl", MANIFEST}
    runs = tmp_path / "runs"
    i_frame = read_state_dict(runs / "i_frame" / "i_frame.pth.tar")
    for stage in ("base", "augment", "joint"):  # the trained I-frame codec, loaded and kept frozen
        after = read_state_dict(runs / stage / "i_frame.pth.tar")
        assert all(torch.equal(after[k], i_frame[k]) for k in i_frame)
    base, augment = (read_state_dict(runs / stage / "p_frame.pth.tar") for stage in ("base", "augment"))
    assert all(torch.equal(base[k], augment[k]) for k in base if k.startswith("BL_codec."))


def test_train_py_bad_configuration(tmp_path, capsys):
    config = REPO / "train_configs" / "base.json"
    output = tmp_path / "run"
    for setting, message in (("crop=[60,64]", "multiples of 16"), ("sequence_length=1", "sequence_length >= 2"),
                             ("steps=0", "steps must be an integer >= 1"), ("anchors=5", "anchors must be at most 4"),
                             ("init=null", "\"init\" must be an object")):
        result = cli(train_cli.main, ["--config", config, "-o", output, "--set", setting], capsys)
        assert_clear_error(result, message)
    assert not output.exists()


def test_failing_runs_create_nothing(tmp_path, capsys):
    """Data, checkpoints and batch size are checked before the output folder is created."""
    vimeo = vimeo_folder(tmp_path / "vimeo", 1)
    output = tmp_path / "runs" / "base"
    tiny = ["steps=1", "batch_size=1", "crop=[64,64]", "num_workers=0", f"data.root={vimeo}", "init.i_frame=null"]
    for setting, message in ((f"data.root={tmp_path / 'none'}", "training data folder not found"),
                             ("data.list=none.txt", "Vimeo-90k list not found"),
                             (f"init.i_frame={tmp_path / 'none.pth.tar'}", "checkpoint not found"),
                             (f"init.p_frame={vimeo / 'sep_trainlist.txt'}", "not a readable PyTorch checkpoint"),
                             ("batch_size=2", "fewer than one batch of 2"),
                             ("crop=[96,96]", "smaller than the 96x96 crop")):
        result = cli(train_cli.main, ["--config", REPO / "train_configs" / "base.json", "-o", output,
                                      "--set", *tiny, setting], capsys)
        assert_clear_error(result, message)
        assert not (tmp_path / "runs").exists()


def test_failing_runs_leave_a_run_as_it_was(tmp_path, capsys):
    """A failed resume or a failed new run into a finished run's folder changes none of its files."""
    vimeo = vimeo_folder(tmp_path / "vimeo", 1)
    output = tmp_path / "run"
    tiny = ["steps=1", "batch_size=1", "crop=[64,64]", "num_workers=0", "sequence_length=2", f"data.root={vimeo}",
            "init.i_frame=null"]
    configs = REPO / "train_configs"
    assert cli(train_cli.main, ["--config", configs / "base.json", "-o", output, "--set", *tiny], capsys)[0] == 0
    before = snapshot(output)
    for stage, resume, setting, message in (("augment", True, "steps=2", "holds stage base, not augment"),
                                            ("base", True, "batch_size=2", "batch_size (1 -> 2)"),
                                            ("base", True, f"data.root={tmp_path / 'none'}", "not found"),
                                            ("base", False, "steps=2", "holds a training run"),
                                            ("base", False, f"init.i_frame={tmp_path / 'none'}",
                                             "holds a training run")):
        args = ["--config", configs / f"{stage}.json", "-o", output, "--set", *tiny, setting]
        assert_clear_error(cli(train_cli.main, args + ["--resume"] * resume, capsys), message)
        assert snapshot(output) == before
    result = cli(train_cli.main, ["--config", configs / "base.json", "-o", tmp_path / "new", "--resume"], capsys)
    assert_clear_error(result, "nothing to resume")
    assert not (tmp_path / "new").exists()


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
    from sevc.io.frames import read_png_folder, rgb_to_yuv420

    frames = list(read_png_folder(DATA / "carphone_176x144", 176, 144, 5))
    (tmp_path / "clip.yuv").write_bytes(b"".join(rgb_to_yuv420(x) for x in frames))
    data = SequenceFolder(tmp_path, length=3, crop=(64, 64), src_type="yuv420", width=176, height=144)
    assert len(data) == 1 and data[0].shape == (3, 3, 64, 64)


def tiny_settings(data=DATA, **changes) -> list:
    """--set values of a one-step run on tiny crops of `data` (PNG sequence folders)."""
    settings = {"data.type": "folders", "data.root": str(data), "steps": 1, "batch_size": 1, "crop": [64, 64],
                "num_workers": 0, "sequence_length": 2, "init.i_frame": None, **changes}
    return [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in settings.items()]


def train_args(output, *settings, config="base.json") -> list:
    return ["--config", REPO / "train_configs" / config, "-o", output, "--set", *settings]


def test_train_py_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    run = tmp_path / "myrun"
    run.mkdir()
    (run / "config.json").write_text('{"mine": true}')
    (run / "i_frame.pth.tar").write_bytes(b"my weights")
    before = snapshot(run)
    assert_clear_error(cli(train_cli.main, train_args(run, *tiny_settings()), capsys), "--overwrite")
    assert snapshot(run) == before
    assert_clear_error(cli(train_cli.main, train_args(run, *tiny_settings()) + ["--overwrite"], capsys), "config.json")
    assert snapshot(run) == before


@pytest.mark.parametrize("settings, message", [
    (["a=2", "a.b=1"], "a.b"),
    (["lr=\"abc\""], "lr"),
    (["lambdas=5"], "lambdas"),
    (["lambdas=[\"a\"]"], "lambdas"),
    (["frame_weights=[]"], "frame_weights"),
    (["lr_milestones=[\"x\"]"], "lr_milestones"),
    (["layer_weight=null"], "layer_weight"),
])
def test_train_py_bad_values_are_one_line_before_anything_is_written(tmp_path, capsys, settings, message):
    output = tmp_path / "run"
    assert_clear_error(cli(train_cli.main, train_args(output, *tiny_settings(), *settings), capsys), message)
    assert not output.exists()


def test_frames_smaller_than_the_crop_anywhere_stop_the_run_before_it_starts(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(DATA / "bikes_256x128", data / "a_large")
    (data / "b_small").mkdir()
    for k in range(1, 4):
        with Image.open(DATA / "bikes_256x128" / f"im{k:05d}.png") as image:
            image.crop((0, 0, 64, 64)).save(data / "b_small" / f"im{k:05d}.png")
    output = tmp_path / "run"
    result = cli(train_cli.main, train_args(output, *tiny_settings(data, crop=[96, 96], batch_size=2)), capsys)
    assert_clear_error(result, "b_small", "smaller than the 96x96 crop")
    assert not output.exists()


def test_a_data_loader_worker_error_is_one_line(tmp_path, capsys):
    """Frames whose headers are sound and whose pixels are cut short fail in a DataLoader worker."""
    data = tmp_path / "data"
    for name in ("a_clip", "b_clip"):
        shutil.copytree(DATA / "bikes_256x128", data / name)
    for frame in sorted((data / "b_clip").iterdir())[1:]:
        frame.write_bytes(frame.read_bytes()[:2000])
    output = tmp_path / "run"
    status, _, err = cli(train_cli.main, train_args(output, *tiny_settings(data, num_workers=4, batch_size=2)), capsys)
    assert_clear_error((status, "", err), "b_clip")
    assert "Traceback" not in err and "Warning" not in err, err
    assert not output.exists()


def test_resume_uses_the_runs_own_configuration(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(train_cli.main, train_args(run, *tiny_settings()), capsys)[0] == 0
    # the README's resume command after a run started with --set
    status, out, err = cli(train_cli.main, ["-o", run, "--resume", "--set", "steps=2"], capsys)
    assert status == 0 and "last step: step 2" in out, err
    assert json.loads((run / "config.json").read_text())["steps"] == 2
    before = snapshot(run)
    assert_clear_error(cli(train_cli.main, ["-o", run, "--resume", "--set", "steps=3", "lr=0.5"], capsys), "lr")
    result = cli(train_cli.main, ["--config", REPO / "train_configs" / "base.json", "-o", run, "--resume"], capsys)
    assert_clear_error(result, "data.root")
    assert snapshot(run) == before


def test_fewer_clips_than_a_batch_is_said_right(tmp_path, capsys):
    result = cli(train_cli.main, train_args(tmp_path / "run", *tiny_settings(DATA / "bikes_256x128",
                                                                           batch_size=2)), capsys)
    assert_clear_error(result, "1 clip is fewer than one batch of 2")
