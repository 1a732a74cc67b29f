"""The job runner (sevc.eval.runner): worker numbers, and stopping a run stops its workers now."""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from sevc.eval.runner import Worker, execute


def _setup(number: int, folder: str) -> None:
    Path(folder, f"worker-{number}").write_text(str(os.getpid()))


def _sleep(job: float, run_args) -> dict:
    time.sleep(job)
    return {"slept": job}


def _once_all_started(job: float, folder: str) -> dict:
    """Job 0 ends once both workers have started; the others sleep `job` seconds."""
    deadline = time.monotonic() + 60
    while job == 0 and len(list(Path(folder).iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return _sleep(job, folder)


def test_one_worker_runs_in_this_process(tmp_path):
    outcomes = list(execute(Worker(_setup, (str(tmp_path),), _sleep, None), [0, 0], iter(range(2)), 1))
    assert outcomes == [(0, {"slept": 0}, None), (1, {"slept": 0}, None)]
    assert [p.name for p in tmp_path.iterdir()] == ["worker-0"]
    assert (tmp_path / "worker-0").read_text() == str(os.getpid())  # in this process


def test_stopping_a_run_terminates_its_busy_workers(tmp_path):
    outcomes = execute(Worker(_setup, (str(tmp_path),), _once_all_started, str(tmp_path)), [0, 600, 600],
                       iter(range(3)), 2)
    assert next(outcomes) == (0, {"slept": 0}, None)
    started = time.monotonic()
    outcomes.close()  # as Ctrl-C or an error in the main process would
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-0", "worker-1"]
    pids = {int(p.read_text()) for p in tmp_path.iterdir()}
    while any(process.pid in pids for process in multiprocessing.active_children()):
        assert time.monotonic() - started < 60, "the workers were not stopped"
        time.sleep(0.05)
