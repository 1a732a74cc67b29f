"""What the command-line tools share: flags, devices, deterministic set-up, error reporting."""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Callable, List, Optional

import torch
from tqdm import tqdm

from ..codec.schedule import DEFAULT_REFRESH_INTERVAL
from ..errors import SevcError
from ..io.frames import COLOR_MATRICES, COLOR_RANGES, SOURCE_TYPES
from ..models.loading import Models, anchor_count, load_models
from ..models.stand_in import STAND_IN_ANCHORS, stand_in_models
from ..numerics import Numerics

EXIT_TERMINATED = 128 + signal.SIGTERM
_TORCH_THREADS = torch.get_num_threads()  # PyTorch's default: the cores, or OMP_NUM_THREADS


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so partial outputs are cleaned up."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, reporting a bad command line like any other bad input: one `error:` line, exit 1."""

    def error(self, message: str):
        raise SevcError(f"{message} (see {self.prog} --help)")


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not "
                                                            "a terminal either)")


def progress(total: int, unit: str, quiet: bool = False) -> tqdm:
    """A progress bar on stderr (frames or jobs done, rate, ETA); off with `quiet` or when stderr
    is not a terminal."""
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=True if quiet else None, dynamic_ncols=True)


def str2bool(value: str) -> bool:
    """The published scripts' boolean flags, as 0 or 1."""
    if str(value) not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")
    return value == "1"


def add_overwrite_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="allow an output that exists and was not written by sevc (only sevc's own files in "
                             "an output folder are replaced)")


def add_model_args(parser: argparse.ArgumentParser, cuda_default: Optional[bool] = None) -> None:
    """The published model and coder flags (checkpoint paths default to ckpt/)."""
    parser.add_argument("--i_frame_model_path", type=str, help="I-frame checkpoint (default ckpt/cvpr2023_i_frame.pth.tar)")
    parser.add_argument("--p_frame_model_path", type=str, help="P-frame checkpoint (default ckpt/cvpr2025_p_frame.pth.tar)")
    parser.add_argument("--stand_in", type=int, metavar="SEED",
                        help="untrained stand-in weights of this seed instead of checkpoints: every step runs and "
                             "every rate has its own bits, but pictures are noise (to try the tools)")
    parser.add_argument("--cuda", type=str2bool, nargs="?", const=True, default=cuda_default,
                        help="run on GPU (default: " + ("auto" if cuda_default is None else str(cuda_default)) + ")")
    parser.add_argument("--ec_thread", type=str2bool, nargs="?", const=True, default=False,
                        help="entropy-code in a background thread")
    parser.add_argument("--stream_part_i", type=int, default=1, help="parallel rANS parts, I-frames (1..16)")
    parser.add_argument("--stream_part_p", type=int, default=1, help="parallel rANS parts, P-frames (1..16)")
    parser.add_argument("--refresh_interval", type=int, default=DEFAULT_REFRESH_INTERVAL, help="reset the propagated features every N frames")
    add_threads_arg(parser)


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads (default: 1 in float numerics, as published; in "
                                                    "portable numerics what PyTorch would use (OMP_NUM_THREADS), at "
                                                    "most the cores this process may use)")


def add_input_args(parser: argparse.ArgumentParser, required: bool) -> None:
    """Input frames: a PNG folder or a raw YUV 4:2:0 file and how to convert it."""
    parser.add_argument("-i", "--input_path", type=str, required=required,
                        help="PNG folder (im00001.png, ...) or raw 8-bit YUV 4:2:0 file")
    parser.add_argument("--src_type", choices=SOURCE_TYPES, help="input type (default: png for a folder, "
                                                                 "yuv420 for a file)")
    parser.add_argument("--yuv_matrix", choices=tuple(COLOR_MATRICES), default="bt601", help="YUV <-> RGB matrix")
    parser.add_argument("--yuv_range", choices=COLOR_RANGES, default="limited", help="YUV value range")


def source_type(args: argparse.Namespace) -> str:
    """The input's type: --src_type, else png for a folder and yuv420 for a file."""
    if args.src_type:
        return args.src_type
    if not os.path.exists(args.input_path):
        raise SevcError(f"input not found: {args.input_path} (a folder of PNG frames or a raw .yuv file)")
    return "png" if os.path.isdir(args.input_path) else "yuv420"


def check_model_args(args: argparse.Namespace) -> None:
    if args.stand_in is not None and (args.i_frame_model_path or args.p_frame_model_path):
        raise SevcError("--stand_in replaces the checkpoints: drop --i_frame_model_path / --p_frame_model_path")
    for flag in ("stream_part_i", "stream_part_p"):
        if not 1 <= getattr(args, flag) <= 16:
            raise SevcError(f"--{flag} must be in 1..16, got {getattr(args, flag)}")
    if args.refresh_interval is not None and args.refresh_interval < 1:
        raise SevcError(f"--refresh_interval must be positive, got {args.refresh_interval}")


def models_of(args: argparse.Namespace, device: str) -> Models:
    """The models the model flags name: the checkpoints, or stand-in weights with --stand_in."""
    coders = dict(ec_thread=args.ec_thread, stream_part_i=args.stream_part_i, stream_part_p=args.stream_part_p)
    if args.stand_in is not None:
        return stand_in_models(args.stand_in, device, **coders)
    return load_models(args.i_frame_model_path, args.p_frame_model_path, device, **coders)


def anchors_of(args: argparse.Namespace) -> int:
    """How many q anchors the models the model flags name hold."""
    return STAND_IN_ANCHORS if args.stand_in is not None else anchor_count(args.i_frame_model_path)


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
    published set-up), and in portable numerics PyTorch's own default (which follows
    OMP_NUM_THREADS), capped at the usable cores and shared among `workers` processes."""
    if requested is not None:
        if requested < 1:
            raise SevcError(f"--threads must be at least 1, got {requested}")
        return requested
    if numerics is Numerics.FLOAT:
        return 1
    return max(1, min(_TORCH_THREADS, usable_cores()) // workers)


def devices(cuda: Optional[bool]) -> List[str]:
    """The devices to use: every GPU if `cuda` (None: if there is one), else the CPU."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    if not cuda:
        return ["cpu"]
    if not torch.cuda.is_available():
        raise SevcError("--cuda was asked for, but PyTorch sees no CUDA device")
    return [f"cuda:{k}" for k in range(torch.cuda.device_count())]


def deterministic(threads: int = 1) -> None:
    """The published scripts' set-up: deterministic kernels, no cuDNN autotuning, full float32
    precision on GPUs (no TF32 in matrix products and convolutions), and `threads` CPU threads
    (see `thread_count`).

    In float numerics, encoder and decoder must compute the same entropy-model scales bit for bit;
    one thread makes that hold across runs and machines of the same kind. Portable numerics
    computes the same bits with any number of threads.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    torch.manual_seed(0)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def plain_warnings() -> None:
    """Show warnings as one `warning: ...` line (no source line); SEVC_DEBUG=1 keeps Python's form."""
    if not os.environ.get("SEVC_DEBUG"):
        warnings.showwarning = _show_warning


def _terminate(signum, frame) -> None:
    raise Terminated()


def run(main: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    """Run a tool's `main`, turning bad input into one line on stderr and exit status 1, and
    SIGINT / SIGTERM into a clean stop (partial outputs removed) with status 130 / 143.

    Set SEVC_DEBUG=1 to see the full traceback instead.
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    threads = torch.get_num_threads()
    shown = warnings.showwarning
    plain_warnings()
    try:
        return main(argv)
    except (SevcError, ValueError, OSError) as exc:
        if os.environ.get("SEVC_DEBUG"):
            raise
        message = exc.strerror + f": {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)
        torch.set_num_threads(threads)
        warnings.showwarning = shown
