"""test.py: rate-distortion evaluation of a test configuration (estimated bits, as published).

Every (sequence, rate) pair is one job; `--worker N` runs them in N processes, each with its
own copy of the models, on the GPUs round-robin (`--cuda 1`) or on the CPU. Every sequence's
input is checked before the first job; a sequence failing while it runs is reported by name, the
others still finish and are written (nothing is written when every job fails).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from .. import memory
from ..errors import SevcError
from ..eval.evaluation import (ConfigSequence, Job, check_sources, evaluate_sequence, is_result_file,
                               load_test_config, rates_to_test)
from ..io.outputs import atomic_file, check_file
from ..models.loading import compile_transforms
from ..models.rate import Rate
from ..numerics import Numerics, Precision
from .common import (ArgumentParser, add_model_args, add_overwrite_arg, add_quiet_arg, anchors_of, deterministic,
                     devices, models_of, plain_warnings, progress, run, thread_count, warn_memory)

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
    return parser.parse_args(argv)


def _init_worker(args: argparse.Namespace, device_list: List[str], counter, pool: bool = False) -> None:
    """Load this process's models; in a pool's worker Ctrl-C is left to the main process, which stops the workers."""
    global _MODELS
    if pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    plain_warnings()
    deterministic(thread_count(args.threads, Numerics.named(args.numerics), args.worker))
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _MODELS = models_of(args, device_list[index % len(device_list)])
    if args.compile:
        compile_transforms(_MODELS)


def _run_job(job: Job, args: argparse.Namespace) -> Tuple[Job, Optional[Dict], Optional[str]]:
    seq, numerics = job.sequence, Numerics.named(args.numerics)
    try:
        with memory.guard(seq.width, seq.height, numerics, _MODELS.device):
            return job, evaluate_sequence(_MODELS, job, refresh_interval=args.refresh_interval, numerics=numerics,
                                          precision=Precision.named(args.precision)), None
    except (SevcError, ValueError, OSError, RuntimeError) as exc:
        return job, None, f"{type(exc).__name__}: {exc}" if isinstance(exc, RuntimeError) else str(exc)


def _jobs(args: argparse.Namespace, sequences: List[ConfigSequence], rates: List[Tuple[Rate, Rate]]) -> List[Job]:
    kind = "checkpoint anchors" if rates[0][0].anchor else "q indexes"
    print(f"testing {args.rate_num} rates, {kind}: I {[i.index for i, _ in rates]}, P {[p.index for _, p in rates]}")
    return [Job(seq, k, i_rate, p_rate) for seq in sequences for k, (i_rate, p_rate) in enumerate(rates)]


def _execute(args, jobs: List[Job], device_list: List[str]):
    if args.worker == 1:
        _init_worker(args, device_list, multiprocessing.Value("i", 0))
        for job in jobs:
            yield _run_job(job, args)
        return
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    pool = concurrent.futures.ProcessPoolExecutor(args.worker, mp_context=context, initializer=_init_worker,
                                                  initargs=(args, device_list, counter, True))
    try:
        futures = [pool.submit(_run_job, job, args) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Stop the workers now (an interrupted or failed run), not after their current jobs."""
    processes = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


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
    device_list = devices(args.cuda)
    largest = max(sequences, key=lambda seq: seq.width * seq.height)
    warn_memory(largest.width, largest.height, Numerics.named(args.numerics), device_list[0])
    deterministic(thread_count(args.threads, Numerics.named(args.numerics), args.worker))
    jobs = _jobs(args, sequences, rates)
    results: Dict[Tuple[str, str, int], Dict] = {}
    failures = []
    with progress(len(jobs), "job", args.quiet) as bar:
        for job, record, error in _execute(args, jobs, device_list):
            seq = job.sequence
            if error is None:
                results[(seq.dataset, seq.name, job.rate_index)] = record
                bar.set_postfix_str(f"{job.label}: {record['ave_all_frame_bpp']:.4f} bpp "
                                    f"{record['ave_all_frame_psnr']:.2f} dB")
            else:
                failures.append(f"{seq.dataset}/{seq.name} rate {job.rate_index}: {error}")
                tqdm.write(f"failed: {failures[-1]}", file=sys.stderr)
            bar.update()
    log: Dict[str, Dict[str, Dict[str, Dict]]] = {}
    for job in jobs:
        key = (job.sequence.dataset, job.sequence.name, job.rate_index)
        if key in results:
            log.setdefault(key[0], {}).setdefault(key[1], {})[f"{key[2]:03d}"] = results[key]
    if log:
        with atomic_file(args.output_path, is_result_file, args.overwrite, inputs) as path:
            path.write_text(json.dumps(log, indent=2))
    tested = [job for job in jobs if (job.sequence.dataset, job.sequence.name, job.rate_index) in results]
    count = len({(job.sequence.dataset, job.sequence.name) for job in tested})
    written = f"results in {args.output_path}" if log else "no results written"
    print(f"tested {sum(job.sequence.frames for job in tested)} frames ({count} sequences, {len(tested)} of "
          f"{len(jobs)} sequence-rate jobs) in {(time.time() - begin) / 60:.1f} min; {written}")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def entry() -> int:
    return run(main)
