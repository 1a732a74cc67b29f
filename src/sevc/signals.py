"""Stopping cleanly on a signal: SIGINT (Ctrl-C) and SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 (what
`timeout`, docker, Slurm, a closed terminal or a job scheduler send) unwind the program like an
exception, so that partial outputs are removed; the exit status is 128 + the signal's number.

Only the first signal unwinds; later ones, while the program cleans up, are noted and ignored,
so that a second SIGTERM or a repeated Ctrl-C cannot interrupt the clean-up. Code that must not
be interrupted half-way (moving finished outputs into place) runs in `critical()`: a signal
arriving there takes effect when it ends. This module imports nothing heavy, so the tools
install the handlers before loading PyTorch.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator, List, Optional, Tuple

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


class Terminated(BaseException):
    """A stopping signal other than SIGINT arrived: unwinds like KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    stopping: Optional[int] = None  # the signal being handled
    deferred: List[int] = []        # signals that arrived in a critical section
    critical = 0                    # nesting depth of critical sections


def _stop(signum: int) -> None:
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _handle(signum, frame) -> None:
    if _State.stopping is not None:
        return
    if _State.critical:
        _State.deferred.append(signum)
        return
    _State.stopping = signum
    _stop(signum)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Handle the stopping signals in this block (see the module's docstring); the previous
    handlers are back afterwards, unless a signal stopped the block: then the program is ending,
    and further signals are ignored."""
    previous = [(signum, signal.signal(signum, _handle)) for signum in STOPPING]
    _State.stopping, _State.deferred, _State.critical = None, [], 0
    try:
        yield
    finally:
        for signum, handler in previous:  # a program stopping on a signal ignores further ones until it exits
            signal.signal(signum, handler if _State.stopping is None else signal.SIG_IGN)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A block a stopping signal does not interrupt: one that arrives meanwhile takes effect
    when the block ends."""
    _State.critical += 1
    try:
        yield
    finally:
        _State.critical -= 1
    if not _State.critical and _State.deferred and _State.stopping is None:
        _State.stopping = _State.deferred[0]
        _stop(_State.stopping)


def stop_status(exc: BaseException) -> Optional[Tuple[str, int]]:
    """(message, exit status) of an interruption by a signal; None for any other exception."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 128 + signal.SIGINT
    if isinstance(exc, Terminated):
        return "terminated", 128 + exc.signum
    return None
