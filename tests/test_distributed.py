"""test.py across processes (torchrun) and across interruptions (--resume), stand-in weights, CPU."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sevc.cli import evaluate
from sevc.cli.common import run

from conftest import CLI_CASE as CASE
from conftest import REPO, assert_clear_error, cli
from reference import FIXTURES

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _config(tmp_path: Path, sequences: dict) -> Path:
    config = {"root_path": str(FIXTURES), "test_classes": {"fixtures": {
        "test": 1, "base_path": CASE, "src_type": "png", "sequences": sequences}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


FRAMES = {"frames": {"width": 128, "height": 128, "frames": 2, "gop": -1}}


def _args(config: Path, output: Path):
    return ["--test_config", config, "--stand_in", 0, "--output_path", output]


def _without_times(path: Path) -> dict:
    """A result file with every record's test_time left out."""
    results = json.loads(path.read_text())
    return {dataset: {name: {rate: {key: value for key, value in record.items() if key != "test_time"}
                             for rate, record in rates.items()} for name, rates in sequences.items()}
            for dataset, sequences in results.items()}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """(config, result file) of test.py -w 1 on 4 rates of a 2-frame clip."""
    folder = tmp_path_factory.mktemp("one_process")
    config = _config(folder, FRAMES)
    assert run(evaluate.main, [str(a) for a in _args(config, folder / "r.json") + ["-w", 1, "--quiet"]]) == 0
    return config, folder / "r.json"


def test_torchrun_gives_the_json_of_one_process(one_process, tmp_path):
    config, expected = one_process
    output = tmp_path / "r.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "test.py"), *map(str, _args(config, output))]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("tested 8 frames (1 sequences, 4 of 4 sequence-rate jobs)") == 1  # rank 0 reports
    assert _without_times(output) == _without_times(expected)
    assert not Path(f"{output}.jobs").exists()


def test_a_killed_run_resumes_to_the_same_json(one_process, tmp_path, capsys):
    config, expected = one_process
    output = tmp_path / "r.json"
    records = Path(f"{output}.jobs")
    process = subprocess.Popen([sys.executable, str(REPO / "test.py"), *map(str, _args(config, output))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 300
    while process.poll() is None and not list(records.glob("job-*.json")) and time.time() < deadline:
        time.sleep(0.02)
    process.kill()  # as a preempted node would be: no clean-up
    process.wait()
    done = len(list(records.glob("job-*.json")))
    assert 1 <= done < 4 and not output.exists()
    status, out, err = cli(evaluate.main, [*_args(config, output), "--resume"], capsys)
    assert status == 0, err
    assert f"resuming: {done} of 4 jobs were done" in out
    assert _without_times(output) == _without_times(expected)
    assert not records.exists()


def test_records_that_cannot_be_resumed(tmp_path, capsys):
    """Records of a run whose other jobs failed stay; another run needs --resume, the same
    settings, and readable records."""
    for name in ("good", "broken"):
        shutil.copytree(FIXTURES / CASE / "frames", tmp_path / "clips" / name)
    second = tmp_path / "clips" / "broken" / "im00002.png"
    second.write_bytes(second.read_bytes()[:200])  # its header is whole: it fails only when it is decoded
    config = {"root_path": str(tmp_path), "test_classes": {"clips": {"test": 1, "base_path": "clips", "src_type": "png",
                                                                     "sequences": {"good": FRAMES["frames"],
                                                                                   "broken": FRAMES["frames"]}}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = [*_args(tmp_path / "config.json", tmp_path / "r.json"), "--rate_num", 2, "--i_frame_q_indexes", 5, 60]
    status, _, err = cli(evaluate.main, args, capsys)
    assert status == 1 and "clips/broken rate 0" in err and "run again with --resume" in err
    records = sorted(Path(f"{tmp_path / 'r.json'}.jobs").glob("job-*.json"))
    assert len(records) == 2
    assert_clear_error(cli(evaluate.main, args, capsys), "holds 2 finished jobs of an earlier run", "--resume")
    other = [*_args(tmp_path / "config.json", tmp_path / "r.json"), "--rate_num", 2, "--i_frame_q_indexes", 5, 61,
             "--resume"]
    assert_clear_error(cli(evaluate.main, other, capsys), "with other settings than this run's")
    records[0].write_text('{"job": {"dataset": "clips"}, "record": 3}')
    assert_clear_error(cli(evaluate.main, [*args, "--resume"], capsys), records[0].name,
                       "not a job record sevc can resume")
