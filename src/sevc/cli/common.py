"""What the command-line tools share: flags, devices, deterministic set-up, error reporting."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable, List, Optional

import torch

from ..errors import SevcError
from ..io.frames import COLOR_MATRICES, COLOR_RANGES, SOURCE_TYPES
from ..numerics import Numerics

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so partial outputs are cleaned up."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, reporting a bad command line like any other bad input: one `error:` line, exit 1."""

    def error(self, message: str):
        raise SevcError(f"{message} (see {self.prog} --help)")


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
    parser.add_argument("--stream_part_i", type=int, default=1, help="parallel rANS parts, I-frames (1..16)")
    parser.add_argument("--stream_part_p", type=int, default=1, help="parallel rANS parts, P-frames (1..16)")
    parser.add_argument("--refresh_interval", type=int, default=32, help="reset the propagated features every N frames")


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
    for flag in ("stream_part_i", "stream_part_p"):
        if not 1 <= getattr(args, flag) <= 16:
            raise SevcError(f"--{flag} must be in 1..16, got {getattr(args, flag)}")
    if args.refresh_interval < 1:
        raise SevcError(f"--refresh_interval must be positive, got {args.refresh_interval}")


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


def _terminate(signum, frame) -> None:
    raise Terminated()


def run(main: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    """Run a tool's `main`, turning bad input into one line on stderr and exit status 1, and
    SIGINT / SIGTERM into a clean stop (partial outputs removed) with status 130 / 143.

    Set SEVC_DEBUG=1 to see the full traceback instead.
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    threads = torch.get_num_threads()
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
