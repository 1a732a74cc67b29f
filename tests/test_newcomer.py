"""What a newcomer meets first: thread counts, progress output, stand-in weights that rate,
honest sizes and messages."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sevc import runtime
from sevc.cli import bdrate, decode, encode, evaluate
from sevc.cli.common import progress, run
from sevc.io.samples import SAMPLE_CLIP, SAMPLE_SIZE
from sevc.numerics import Numerics
from sevc.runtime import thread_count, usable_cores

from conftest import REPO, assert_clear_error, cli

WIDTH, HEIGHT = SAMPLE_SIZE
CLIP_ARGS = ["-i", SAMPLE_CLIP, "--width", WIDTH, "--height", HEIGHT, "-f", 2, "-q", 40]


def test_thread_count_follows_the_flag_the_environment_and_the_cores(monkeypatch):
    assert thread_count(3, Numerics.FLOAT) == 3 and thread_count(3, Numerics.PORTABLE) == 3
    assert thread_count(None, Numerics.FLOAT) == 1  # the published set-up
    monkeypatch.setattr(runtime, "_TORCH_THREADS", 1000)  # more than this machine has
    assert thread_count(None, Numerics.PORTABLE) == usable_cores() <= (os.cpu_count() or 1)
    assert thread_count(None, Numerics.PORTABLE, workers=1000) == 1
    monkeypatch.setattr(runtime, "_TORCH_THREADS", 1)  # OMP_NUM_THREADS=1, as PyTorch read it
    assert thread_count(None, Numerics.PORTABLE) == 1


def test_bad_thread_count(tmp_path, capsys):
    result = cli(encode.main, [*CLIP_ARGS, "--stand_in", 0, "--threads", 0, "-b", tmp_path / "s.sevc"], capsys)
    assert_clear_error(result, "--threads", "must be in 1..")


def test_progress_bars_only_on_terminals_and_never_when_quiet(capsys):
    assert progress(3, "frame", quiet=True).disable
    assert progress(3, "frame").disable  # stderr is captured here: not a terminal


@pytest.fixture(scope="module")
def stand_in_stream(tmp_path_factory):
    """The bundled clip's first 2 frames encoded by encoder.py with stand-in weights (portable)."""
    path = tmp_path_factory.mktemp("stand_in") / "s.sevc"
    assert run(encode.main, [str(a) for a in [*CLIP_ARGS, "--stand_in", 0, "-b", path, "--quiet"]]) == 0
    return path


def test_the_tools_run_on_stand_in_weights(stand_in_stream, tmp_path, capsys):
    status, out, err = cli(decode.main, ["-b", stand_in_stream, "-o", tmp_path / "d", "--stand_in", 0], capsys)
    assert status == 0 and "%|" not in err
    assert sorted(p.name for p in (tmp_path / "d" / "full").iterdir()) == ["im00001.png", "im00002.png"]
    result = cli(decode.main, ["-b", stand_in_stream, "-o", tmp_path / "e", "--stand_in", 1], capsys)
    assert_clear_error(result, "encoded with other weights")
    result = cli(decode.main, ["-b", stand_in_stream, "-o", tmp_path / "f", "--stand_in", 0,
                               "--i_frame_model_path", "x.pth.tar"], capsys)
    assert_clear_error(result, "--stand_in replaces the checkpoints")


def test_the_encoder_counts_every_byte_of_the_stream(tmp_path, capsys):
    path = tmp_path / "s.sevc"
    status, out, _ = cli(encode.main, [*CLIP_ARGS, "--stand_in", 0, "--numerics", "float", "-b", path], capsys)
    assert status == 0 and f" {path.stat().st_size} bytes (" in out


def test_refresh_interval_of_a_sevc_stream_is_its_own(stand_in_stream, tmp_path, capsys):
    result = cli(decode.main, ["-b", stand_in_stream, "-o", tmp_path / "d", "--stand_in", 0,
                               "--refresh_interval", 16], capsys)
    assert_clear_error(result, "records refresh interval 32", "official streams only")
    status, _, _ = cli(decode.main, ["-b", stand_in_stream, "-o", tmp_path / "e", "--stand_in", 0,
                                     "--refresh_interval", 32], capsys)
    assert status == 0


def _test_config(tmp_path):
    config = {"root_path": str(SAMPLE_CLIP.parent), "test_classes": {"bundled": {
        "test": 1, "base_path": "", "src_type": "png",
        "sequences": {SAMPLE_CLIP.name: {"width": WIDTH, "height": HEIGHT, "frames": 1, "gop": -1}}}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_stand_in_rates_differ_and_bd_rate_compares_them(tmp_path, capsys):
    """Every rate of the stand-in weights has its own bits, so test.py's curves are curves and
    bd_rate.py compares them (here float against portable numerics: nearly the same codec)."""
    config = _test_config(tmp_path)
    for numerics in ("float", "portable"):
        status, _, err = cli(evaluate.main, ["--test_config", config, "--stand_in", 0, "--rate_num", 4,
                                             "--numerics", numerics, "--output_path", tmp_path / f"{numerics}.json"],
                             capsys)
        assert status == 0, err
        assert err.count("warning: MS-SSIM needs frames of at least 161x161") <= 1 and "UserWarning" not in err
    records = json.loads((tmp_path / "float.json").read_text())["bundled"][SAMPLE_CLIP.name]
    bpps = [records[k]["ave_all_frame_bpp"] for k in sorted(records)]
    assert len(bpps) == 4 and bpps == sorted(bpps) and len(set(bpps)) == 4
    status, out, err = cli(bdrate.main, ["--anchor", f"float={tmp_path / 'float.json'}",
                                         "--test", f"portable={tmp_path / 'portable.json'}", "-o", tmp_path / "r"],
                           capsys)
    assert status == 0, err
    table = json.loads((tmp_path / "r" / "bd_rate.json").read_text())["bd_rate"]["psnr"]["portable"]
    assert abs(table["Average"]) < 1.0
    markdown = (tmp_path / "r" / "bd_rate.md").read_text()
    assert "-0.0" not in markdown and "No BD-rate for MS-SSIM" in markdown and "161x161" in markdown


def test_stand_in_weights_are_the_same_under_other_kernels():
    """A stream made with stand-in weights names the same weights on any machine."""
    from sevc.weights.stand_in import stand_in_models

    script = "from sevc.weights.stand_in import stand_in_models; print(stand_in_models(3).weights_id.hex())"
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41")
    other = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == stand_in_models(3).weights_id.hex() != stand_in_models(4).weights_id.hex()


def test_the_readme_example_imports_from_sevc_alone():
    """The README's Python example takes every name from `sevc`, which loads PyTorch only when a
    name is first used (the tools handle Ctrl-C before)."""
    readme = (REPO / "README.md").read_text()
    example = readme.split("## Using sevc from Python\n\n```python\n", 1)[1].split("```", 1)[0]
    imports = example.split("\n\n", 1)[0]
    assert imports.startswith("from sevc import (") and "sevc." not in imports
    script = f"import sys\nimport sevc\nassert 'torch' not in sys.modules\n{imports}\nassert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
