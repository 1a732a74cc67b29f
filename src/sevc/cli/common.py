"""What the command-line tools share: flags, devices, error reporting (the deterministic set-up and
thread counts are sevc.runtime's)."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Callable, List, Optional, Tuple

import torch
from tqdm import tqdm

from .. import memory
from ..codec.schedule import DEFAULT_REFRESH_INTERVAL
from ..errors import SevcError
from ..io.frames import COLOR_MATRICES, COLOR_RANGES, SOURCE_TYPES
from ..weights.models import Models, anchor_count, load_models
from ..weights.stand_in import STAND_IN_ANCHORS, stand_in_models
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


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not "
                                                            "a terminal either)")


def progress(total: int, unit: str, quiet: bool = False, initial: int = 0) -> tqdm:
    """A progress bar on stderr (frames or jobs done, rate, ETA), starting at `initial` done;
    off with `quiet` or when stderr is not a terminal."""
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=True if quiet else None, dynamic_ncols=True,
                initial=initial)


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
    parser.add_argument("--stream_part_i", type=int_in(1, 16), default=1, help="parallel rANS parts, I-frames (1..16)")
    parser.add_argument("--stream_part_p", type=int_in(1, 16), default=1, help="parallel rANS parts, P-frames (1..16)")
    parser.add_argument("--refresh_interval", type=int_in(1, UINT32[1]), default=DEFAULT_REFRESH_INTERVAL,
                        help="reset the propagated features every N frames")
    add_threads_arg(parser)


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int_in(1, 1 << 16), help="CPU threads (default: 1 in float numerics, as "
                        "published; in the portable modes what PyTorch would use (OMP_NUM_THREADS), at most the "
                        "cores this process may use)")


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


def _check_stand_in(args: argparse.Namespace) -> None:
    if args.stand_in is not None and (args.i_frame_model_path or args.p_frame_model_path):
        raise SevcError("--stand_in replaces the checkpoints: drop --i_frame_model_path / --p_frame_model_path")


def models_of(args: argparse.Namespace, device: str) -> Models:
    """The models the model flags name: the checkpoints, or stand-in weights with --stand_in."""
    _check_stand_in(args)
    coders = dict(ec_thread=args.ec_thread, stream_part_i=args.stream_part_i, stream_part_p=args.stream_part_p)
    if args.stand_in is not None:
        return stand_in_models(args.stand_in, device, **coders)
    return load_models(args.i_frame_model_path, args.p_frame_model_path, device, **coders)


def anchors_of(args: argparse.Namespace) -> int:
    """How many q anchors the models the model flags name hold."""
    _check_stand_in(args)
    return STAND_IN_ANCHORS if args.stand_in is not None else anchor_count(args.i_frame_model_path)


def devices(cuda: Optional[bool]) -> List[str]:
    """The devices to use: every GPU if `cuda` (None: if there is one), else the CPU."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    if not cuda:
        return ["cpu"]
    if not torch.cuda.is_available():
        raise SevcError("--cuda was asked for, but PyTorch sees no CUDA device")
    return [f"cuda:{k}" for k in range(torch.cuda.device_count())]


def warn_memory(width: int, height: int, numerics: Numerics, device: str) -> None:
    """Say up front (a `warning:` line) when coding width x height frames will likely run out of memory."""
    message = memory.shortfall(width, height, numerics, device)
    if message:
        print(f"warning: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def plain_warnings() -> None:
    """Show warnings as one `warning: ...` line (no source line); SEVC_DEBUG=1 keeps Python's form."""
    if not os.environ.get("SEVC_DEBUG"):
        warnings.showwarning = _show_warning


def run(main: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None) -> int:
    """Run a tool's `main`, turning bad input (and running out of memory) into one line on stderr
    and exit status 1, and SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 into a clean stop (partial
    outputs removed) with status 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).

    Set SEVC_DEBUG=1 to see the full traceback instead.
    """
    threads = torch.get_num_threads()
    shown = warnings.showwarning
    plain_warnings()
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
            warnings.showwarning = shown


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
