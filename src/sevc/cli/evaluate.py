"""test.py: rate-distortion evaluation of a test configuration (estimated bits, as published).

Every (sequence, rate) pair is one job; `--worker N` runs them in N processes, each with its
own copy of the models, on the GPUs round-robin (`--cuda 1`) or on the CPU; under torchrun or
srun the ranks share them (one GPU per local rank). Every sequence's input is checked before the
first job; each finished job is recorded at once and `--resume` continues an interrupted run (see
`sevc.cli.jobs`); a sequence failing while it runs is reported by name, the others still finish
and are written (nothing is written when every job fails).
"""
from __future__ import annotations

import argparse
import time
from typing import Dict, List, Optional, Tuple

from .. import memory
from ..errors import SevcError
from ..eval.distributed import Cluster
from ..eval.evaluation import (ConfigSequence, Job, check_sources, evaluate_sequence, is_result_file,
                               load_test_config, rates_to_test)
from ..eval.runner import Worker
from ..io.outputs import check_file
from ..weights.models import compile_transforms
from ..models.rate import Rate
from ..numerics import Numerics, Precision
from ..runtime import deterministic, thread_count
from .common import (ArgumentParser, add_model_args, add_overwrite_arg, add_quiet_arg, anchors_of, devices, models_of,
                     plain_warnings, run, warn_memory)
from .jobs import add_resume_arg, evaluate_jobs, job_description

_MODELS = None  # (i_frame, p_frame) of this process


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="SEVC rate-distortion evaluation (estimated bits)")
    add_model_args(parser, cuda_default=False)
    parser.add_argument("--rate_num", type=int, default=4, help="number of rates (2..64)")
    parser.add_argument("--i_frame_q_indexes", type=int, nargs="+", help="fine q levels (0..63), one per rate")
    parser.add_argument("--p_frame_q_indexes", type=int, nargs="+", help="fine q levels for P-frames, one per rate")
    parser.add_argument("--test_config", type=str, required=True, help="test configuration JSON")
    parser.add_argument("--worker", "-w", type=int, default=1, help="worker processes")
    parser.add_argument("--output_path", type=str, required=True, help="result JSON")
    parser.add_argument("--ratio", type=float, default=4.0, help="base-layer downsampling ratio (SEVC: 4)")
    parser.add_argument("--precision", choices=[str(p) for p in Precision], default="fp32",
                        help="fp32 (the published numbers), or fp16 / bf16 mixed precision (torch.autocast)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models' transforms (speed)")
    parser.add_argument("--numerics", choices=[str(mode) for mode in Numerics], default="float",
                        help="float (the published arithmetic and numbers), or sevc's bit-exact modes: integer or "
                             "portable (float64)")
    add_overwrite_arg(parser)
    add_quiet_arg(parser)
    add_resume_arg(parser)
    return parser.parse_args(argv)


def _init_worker(number: int, args: argparse.Namespace, device_list: List[str], threads: int) -> None:
    global _MODELS
    plain_warnings()
    deterministic(threads)
    _MODELS = models_of(args, device_list[number % len(device_list)])
    if args.compile:
        compile_transforms(_MODELS)


def _run_job(job: Job, args: argparse.Namespace) -> Dict:
    seq, numerics = job.sequence, Numerics.named(args.numerics)
    with memory.guard(seq.width, seq.height, numerics, _MODELS.device):
        return evaluate_sequence(_MODELS, job, refresh_interval=args.refresh_interval, numerics=numerics,
                                 precision=Precision.named(args.precision))


def _jobs(args: argparse.Namespace, sequences: List[ConfigSequence], rates: List[Tuple[Rate, Rate]],
          report: bool) -> List[Job]:
    kind = "checkpoint anchors" if rates[0][0].anchor else "q indexes"
    if report:
        print(f"testing {args.rate_num} rates, {kind}: I {[i.index for i, _ in rates]}, "
              f"P {[p.index for _, p in rates]}")
    return [Job(seq, k, i_rate, p_rate) for seq in sequences for k, (i_rate, p_rate) in enumerate(rates)]


def _settings(args: argparse.Namespace, job: Job) -> Dict:
    """What determines a job's record besides its sequence (see `sevc.cli.jobs.job_description`)."""
    models = {"stand_in": args.stand_in} if args.stand_in is not None else {
        "i_frame_model_path": args.i_frame_model_path, "p_frame_model_path": args.p_frame_model_path}
    return {"i_rate": str(job.i_rate), "p_rate": str(job.p_rate), **models, "numerics": args.numerics,
            "precision": args.precision, "compile": args.compile, "refresh_interval": args.refresh_interval,
            "threads": args.threads, "cuda": args.cuda}


def main(argv: Optional[List[str]] = None) -> int:
    begin = time.time()
    args = parse_args(argv)
    if args.worker < 1:
        raise SevcError(f"--worker must be at least 1, got {args.worker}")
    if args.ratio != 4:
        raise SevcError("SEVC's base layer is 4x downsampled; --ratio must be 4")
    if Numerics.named(args.numerics).portable and (args.precision != "fp32" or args.compile):
        raise SevcError(f"--numerics {args.numerics} has its own arithmetic: --precision and --compile apply to float "
                        "numerics")
    check_file(args.output_path, is_result_file, args.overwrite, [args.test_config])
    rates = rates_to_test(args.rate_num, anchors_of(args), args.i_frame_q_indexes, args.p_frame_q_indexes)
    sequences = load_test_config(args.test_config)
    inputs = [args.test_config, *(seq.source for seq in sequences)]
    check_file(args.output_path, is_result_file, args.overwrite, inputs)
    check_sources(sequences)
    cluster = Cluster.from_env()
    device_list = cluster.devices(devices(args.cuda))
    largest = max(sequences, key=lambda seq: seq.width * seq.height)
    if cluster.main:
        warn_memory(largest.width, largest.height, Numerics.named(args.numerics), device_list[0])
    threads = thread_count(args.threads, Numerics.named(args.numerics), args.worker * cluster.local_world_size)
    deterministic(threads)
    jobs = _jobs(args, sequences, rates, cluster.main)
    worker = Worker(_init_worker, (args, device_list, threads), _run_job, args)
    return evaluate_jobs(jobs, [job_description(job, _settings(args, job)) for job in jobs], worker, args, cluster,
                         inputs, begin)


def entry() -> int:
    return run(main)
