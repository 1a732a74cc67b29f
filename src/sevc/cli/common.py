"""What the command-line tools share: flags, devices, deterministic set-up, error reporting."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, List, Optional, Tuple

import torch

from .. import memory
from ..errors import SevcError
from ..io.frames import COLOR_MATRICES, COLOR_RANGES, SOURCE_TYPES
from ..numerics import Numerics
from ..signals import handling, stop_status

INT32 = (-2 ** 31, 2 ** 31 - 1)
UINT32 = (0, 2 ** 32 - 1)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, reporting a bad command line like any other bad input: one `error:` line, exit 1."""

    def error(self, message: str):
        raise SevcError(f"{message} (see {self.prog} --help)")


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in low..high (e.g. what a fixed-width header field holds)."""
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value
    return integer


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
    parser.add_argument("--cuda", type=str2bool, nargs="?", const=True, default=cuda_default,
                        help="run on GPU (default: " + ("auto" if cuda_default is None else str(cuda_default)) + ")")
    parser.add_argument("--ec_thread", type=str2bool, nargs="?", const=True, default=False,
                        help="entropy-code in a background thread")
    parser.add_argument("--stream_part_i", type=int_in(1, 16), default=1, help="parallel rANS parts, I-frames (1..16)")
    parser.add_argument("--stream_part_p", type=int_in(1, 16), default=1, help="parallel rANS parts, P-frames (1..16)")
    parser.add_argument("--refresh_interval", type=int_in(1, UINT32[1]), default=32,
                        help="reset the propagated features every N frames")


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


def devices(cuda: Optional[bool]) -> List[str]:
    """The devices to use: every GPU if `cuda` (None: if there is one), else the CPU."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    if not cuda:
        return ["cpu"]
    if not torch.cuda.is_available():
        raise SevcError("--cuda was asked for, but PyTorch sees no CUDA device")
    return [f"cuda:{k}" for k in range(torch.cuda.device_count())]


def deterministic(numerics: Numerics = Numerics.FLOAT) -> None:
    """The published scripts' set-up: one CPU thread, deterministic kernels, no cuDNN autotuning,
    and full float32 precision on GPUs (no TF32 in matrix products and convolutions).

    In float numerics, encoder and decoder must compute the same entropy-model scales bit for bit;
    this makes that hold across runs and machines of the same kind. Portable numerics computes the
    same bits with any number of threads, so it uses every core.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads((os.cpu_count() or 1) if numerics is Numerics.PORTABLE else 1)
    torch.manual_seed(0)


def warn_memory(width: int, height: int, numerics: Numerics, device: str) -> None:
    """Say up front (a `warning:` line) when coding width x height frames will likely run out of memory."""
    message = memory.shortfall(width, height, numerics, device)
    if message:
        print(f"warning: {message}", file=sys.stderr)


def run(main: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    """Run a tool's `main`, turning bad input (and running out of memory) into one line on stderr
    and exit status 1, and SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 into a clean stop (partial
    outputs removed) with status 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).

    Set SEVC_DEBUG=1 to see the full traceback instead.
    """
    threads = torch.get_num_threads()
    with handling():
        try:
            return main(argv)
        except BaseException as exc:  # bad input, running out of memory, a signal: one line; others go on
            outcome = _outcome(exc)
            if outcome is None or (outcome[1] == 1 and os.environ.get("SEVC_DEBUG")):
                raise
            print(outcome[0], file=sys.stderr)
            return outcome[1]
        finally:
            torch.set_num_threads(threads)


def _outcome(exc: BaseException) -> Optional[Tuple[str, int]]:
    """(the line to print, the exit status) of a tool stopped by `exc`; None for a bug."""
    stopped = stop_status(exc)
    if stopped is not None:
        return stopped
    if memory.is_out_of_memory(exc):
        detail = f" ({exc})" if str(exc) else ""
        return f"error: out of memory{detail}; use smaller frames or a machine with more memory", 1
    if isinstance(exc, OSError) and exc.filename:
        return f"error: {exc.strerror}: {exc.filename}", 1
    if isinstance(exc, (SevcError, ValueError, OSError)):
        return f"error: {exc}", 1
    return None
