"""The process's compute set-up, shared by the tools and the benchmarks: how many CPU threads
to run, and the deterministic kernels of the published scripts."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch

from .numerics import Numerics

_TORCH_THREADS = torch.get_num_threads()  # PyTorch's default: the cores, or OMP_NUM_THREADS


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def thread_count(requested: Optional[int], numerics: Numerics = Numerics.FLOAT, workers: int = 1) -> int:
    """CPU threads per process: `requested` (--threads) if given; else 1 in float numerics (the
    published set-up), and in the portable modes PyTorch's own default (which follows
    OMP_NUM_THREADS), capped at the usable cores and shared among `workers` processes."""
    if requested is not None:
        return requested
    if numerics is Numerics.FLOAT:
        return 1
    return max(1, min(_TORCH_THREADS, usable_cores()) // workers)


def deterministic(threads: int = 1) -> None:
    """The published scripts' set-up: deterministic kernels, no cuDNN autotuning, full float32
    precision on GPUs (no TF32 in matrix products and convolutions), and `threads` CPU threads
    (see `thread_count`).

    In float numerics, encoder and decoder must compute the same entropy-model scales bit for bit;
    one thread makes that hold across runs and machines of the same kind. The portable modes
    compute the same bits with any number of threads.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
