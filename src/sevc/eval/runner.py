"""Running a rank's jobs: in this process (one worker) or in a pool of worker processes, each job
claimed only when a worker is free (so that the ranks of a distributed run share the work)."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Sequence, Set, Tuple

from ..errors import SevcError
from .distributed import Outcome


@dataclass(frozen=True)
class Worker:
    """What runs jobs: each worker process calls `setup(number, *setup_args)` once (its number:
    0, 1, ...), then `run(job, run_args)` -> record for each job. Both must be top-level functions
    (the pool pickles them)."""

    setup: Callable
    setup_args: tuple
    run: Callable
    run_args: object


def _start(counter, pool: bool, setup: Callable, setup_args: tuple) -> None:
    """A worker process's initializer: its number from the shared counter, then `setup`; in a
    pool's worker Ctrl-C is left to the main process, which stops the workers."""
    if pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with counter.get_lock():
        number = counter.value
        counter.value += 1
    setup(number, *setup_args)


def attempt(run: Callable, job, run_args) -> Tuple[Optional[dict], Optional[str]]:
    """(record, None) of a job, or (None, why it failed) for errors of the job's input or device."""
    try:
        return run(job, run_args), None
    except (SevcError, ValueError, OSError, RuntimeError) as exc:
        return None, f"{type(exc).__name__}: {exc}" if isinstance(exc, RuntimeError) else str(exc)


def execute(worker: Worker, jobs: Sequence, claims: Iterator[int], processes: int) -> Iterator[Outcome]:
    """The outcomes of the jobs `claims` yields positions of, as they finish, run by `processes`
    worker processes (1: in this process)."""
    if processes == 1:
        _start(multiprocessing.Value("i", 0), False, worker.setup, worker.setup_args)
        for position in claims:
            yield (position, *attempt(worker.run, jobs[position], worker.run_args))
        return
    context = multiprocessing.get_context("spawn")
    others = set(multiprocessing.active_children())
    pool = concurrent.futures.ProcessPoolExecutor(processes, mp_context=context, initializer=_start,
                                                  initargs=(context.Value("i", 0), True, worker.setup,
                                                            worker.setup_args))
    running: Dict[concurrent.futures.Future, int] = {}
    try:
        for position in claims:
            running[pool.submit(attempt, worker.run, jobs[position], worker.run_args)] = position
            while len(running) >= processes:
                yield from _finished(running)
        while running:
            yield from _finished(running)
    except BaseException:
        _stop(pool, others)
        raise
    pool.shutdown()


def _finished(running: Dict[concurrent.futures.Future, int]) -> Iterator[Outcome]:
    """Wait for one or more running jobs to finish; their outcomes (removed from `running`)."""
    done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
        yield (running.pop(future), *future.result())


def _stop(pool: concurrent.futures.ProcessPoolExecutor, others: Set[multiprocessing.process.BaseProcess]) -> None:
    """Stop the pool's workers (this process's children but `others`, those it had before the
    pool) now (an interrupted or failed run), not after their current jobs."""
    workers = [process for process in multiprocessing.active_children() if process not in others]
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()
