"""Memory: what coding frames of a size takes, what this process may still use, and running out
of it as one clear error instead of an allocator's traceback.

The figures are measured peaks of encoding (decoding and the test path take about as much) on
the CPU, one frame at a time, stand-in weights: a fixed part (PyTorch, the models) and a part
per pixel of the frame padded to multiples of 64, in each numerics mode. They are estimates, said
as such; a GPU takes a little more.
"""
from __future__ import annotations

import contextlib
import resource
from typing import Iterator, Optional

import torch

from .errors import SevcError
from .numerics import Numerics

FIXED = 1 << 30
PER_PIXEL = {Numerics.FLOAT: 4 << 10, Numerics.PORTABLE: 10 << 10, Numerics.INTEGER: 5 << 10}
_ALLOCATOR_FAILURES = ("can't allocate memory", "not enough memory")


class OutOfMemory(SevcError):
    """Coding ran out of memory."""


def needed(width: int, height: int, numerics: Numerics) -> int:
    """About how many bytes coding width x height frames in `numerics` takes."""
    padded = -(-width // 64) * 64 * -(-height // 64) * 64
    return FIXED + PER_PIXEL[numerics] * padded


def _meminfo_available() -> Optional[int]:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None


def _cgroup_available() -> Optional[int]:
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/memory.max") as limit, open("/sys/fs/cgroup/memory.current") as used:
            text = limit.read().strip()
            return None if text == "max" else int(text) - int(used.read())
    return None


def _address_space_available() -> Optional[int]:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return soft - int(line.split()[1]) * 1024
    return None


def available(device: torch.device | str) -> Optional[int]:
    """Bytes this process may still allocate on `device` (None if unknown): on a GPU its free
    memory; on the CPU the least of the machine's available memory, the cgroup's limit and the
    process's address-space limit."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    figures = [f for f in (_meminfo_available(), _cgroup_available(), _address_space_available()) if f is not None]
    return min(figures) if figures else None


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def _advice(width: int, height: int, numerics: Numerics, device: torch.device) -> str:
    options = []
    if numerics is Numerics.PORTABLE:
        options.append(f"float numerics (--numerics float, about {_gib(needed(width, height, Numerics.FLOAT))})")
    options.append("smaller frames")
    options.append("a GPU with more memory" if device.type == "cuda" else "a GPU (--cuda 1)")
    return "use " + ", ".join(options[:-1]) + " or " + options[-1]


def shortfall(width: int, height: int, numerics: Numerics, device: torch.device | str) -> Optional[str]:
    """A warning if coding width x height frames likely needs more memory than is available."""
    device = torch.device(device)
    need, free = needed(width, height, numerics), available(device)
    if free is None or need <= free:
        return None
    return (f"{width}x{height} frames in {numerics} numerics need about {_gib(need)} of memory, and about "
            f"{_gib(free)} is available on {device.type.upper()}; this may run out of memory: "
            f"{_advice(width, height, numerics, device)}")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure (Python's, PyTorch's CPU allocator's or CUDA's)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _ALLOCATOR_FAILURES)


@contextlib.contextmanager
def guard(width: int, height: int, numerics: Numerics, device: torch.device | str) -> Iterator[None]:
    """Turn running out of memory in this block (coding width x height frames) into OutOfMemory,
    one line saying what it needs and what to do."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        device = torch.device(device)
        free = available(device)
        have = "" if free is None else f", {_gib(free)} available now"
        raise OutOfMemory(f"out of memory coding {width}x{height} frames in {numerics} numerics on "
                          f"{device.type.upper()} (about {_gib(needed(width, height, numerics))} needed{have}): "
                          f"{_advice(width, height, numerics, device)}") from None
