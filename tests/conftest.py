"""Shared test set-up: one CPU thread, the reference fixtures and their stand-in weights.

SEVC_TEST_DEVICE=cuda runs the whole-sequence fixture tests (tests/test_sequences.py) and the
committed portable stream's test on that device; everything else runs on the CPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reference import FIXTURES, case_info, stand_in_checkpoint

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CLIPS = Path(__file__).resolve().parent / "data" / "clips"
DEVICE = torch.device(os.environ.get("SEVC_TEST_DEVICE", "cpu"))


_FIGURE = "sevc figure"


@pytest.fixture
def figures(request):
    """figures(line): a measured figure (e.g. portable vs float) for the summary at the end of the
    run, under "sevc figures" (not printed between the test dots, where it would look like a failure;
    kept with the test's report, so that it reaches the summary from pytest-xdist's workers too)."""
    return lambda line: request.node.user_properties.append((_FIGURE, line))


def pytest_terminal_summary(terminalreporter):
    lines = [value for reports in terminalreporter.stats.values() for report in reports
             if getattr(report, "when", None) == "call"
             for key, value in getattr(report, "user_properties", ()) if key == _FIGURE]
    if lines:
        terminalreporter.section("sevc figures")
        for line in lines:
            terminalreporter.write_line(line)


def stand_in_model(model, which: str, seed: int):
    """`model` (eval mode) loaded strictly with the stand-in weights of `which` and `seed`."""
    from sevc.weights.checkpoint import load_weights

    load_weights(model, stand_in_checkpoint(which, seed, model))
    return model.eval()


def read_frame(path: Path) -> torch.Tensor:
    """A PNG as [1, 3, H, W] float32 in [0, 1]."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb))[None]


def case_frames(case: str):
    info = case_info(case)
    return [read_frame(FIXTURES / case / "frames" / name) for name in info["source_frames"]]


def assert_close(actual, expected, atol: float = 1e-4) -> None:
    actual = np.asarray(actual.detach().cpu() if isinstance(actual, torch.Tensor) else actual)
    assert actual.shape == tuple(expected.shape), (actual.shape, expected.shape)
    assert np.abs(actual - expected).max() <= atol, np.abs(actual - expected).max()


def assert_rel_close(actual: float, expected: float, rtol: float = 1e-4) -> None:
    assert abs(actual - expected) <= rtol * abs(expected), (actual, expected)


CLI_CASE = "case_a"  # 128x128, 5 frames, seed 0, codec q 40, test path at checkpoint anchor 2


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """Checkpoint files of the case's stand-in weights, as an official release stores them,
    plus a P-frame checkpoint with one weight changed (another model of the same shape)."""
    folder = tmp_path_factory.mktemp("ckpt")
    seed = case_info(CLI_CASE)["seed"]
    from sevc.models.intra import IntraNoAR
    from sevc.models.sevc import SEVC

    torch.save({"state_dict": stand_in_checkpoint("i_frame", seed, IntraNoAR())}, folder / "i.pth.tar")
    p_state = stand_in_checkpoint("p_frame", seed, SEVC())
    torch.save(p_state, folder / "p.pth.tar")
    p_state["EL_codec.y_q_scale_dec"] = p_state["EL_codec.y_q_scale_dec"] * 1.01
    torch.save(p_state, folder / "p_other.pth.tar")
    return folder


def model_args(ckpt: Path, p_name: str = "p.pth.tar"):
    """Command-line flags loading the stand-in checkpoint files on the CPU."""
    return ["--i_frame_model_path", ckpt / "i.pth.tar", "--p_frame_model_path", ckpt / p_name, "--cuda", "0"]


def cli(main, args, capsys):
    """Run a tool's main as its script does: (exit status, stdout, stderr); never a traceback."""
    from sevc.cli.common import run

    status = run(main, [str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.out, captured.err


def assert_clear_error(result, *fragments) -> None:
    """Exit status 1 and exactly one `error: ...` line on stderr, containing each fragment."""
    status, _, err = result
    assert status == 1, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def fresh_models():
    """New models with PyTorch's default initialisation (seed 0), in eval mode, coders built."""
    from sevc.weights.stand_in import stand_in_models

    return stand_in_models(0)
