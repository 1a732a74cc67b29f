"""The tools' entry points: Ctrl-C and the stopping signals are handled from the first moment,
while the modules (PyTorch among them) load, not only once they run (see `sevc.signals`)."""
from __future__ import annotations

import functools
import importlib
import sys

from ..signals import handling, stop_status


def launch(tool: str) -> int:
    """Import the tool `sevc.cli.<tool>` and run its `entry()`; an interruption while it loads
    exits like one while it runs ('interrupted', 130; 'terminated', 128 + the signal)."""
    with handling():
        try:
            module = importlib.import_module(f"{__package__}.{tool}")
        except BaseException as exc:  # an interruption, or an error to report as usual
            stopped = stop_status(exc)
            if stopped is None:
                raise
            print(stopped[0], file=sys.stderr)
            return stopped[1]
        return module.entry()


# the console scripts and the repository's scripts (sevc-test / test.py, ...)
test = functools.partial(launch, "evaluate")
encode = functools.partial(launch, "encode")
decode = functools.partial(launch, "decode")
bdrate = functools.partial(launch, "bdrate")
anchors = functools.partial(launch, "anchors")
demo = functools.partial(launch, "demo")
train = functools.partial(launch, "train")
