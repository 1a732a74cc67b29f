"""anchors.py: standard-codec anchors (x264, x265, VVC, AV1 through FFmpeg) of a test configuration,
in test.py's result schema, for bd_rate.py (see `sevc.eval.anchors` and README.md)."""
from __future__ import annotations

import argparse
import time
from typing import List, Optional

from ..errors import AnchorError, SevcError
from ..eval import ffmpeg
from ..eval.anchors import CODECS, AnchorJob, Coder, anchor_qps, check_sequence, code_sequence
from ..eval.distributed import Cluster
from ..eval.evaluation import check_sources, is_result_file, load_test_config
from ..eval.runner import Worker
from ..io.outputs import check_file
from ..runtime import deterministic
from .common import ArgumentParser, add_overwrite_arg, add_quiet_arg, int_in, plain_warnings, run
from .jobs import add_resume_arg, evaluate_jobs, job_description


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Code a test configuration with a standard codec (low delay) into test.py's "
                                        "result schema")
    parser.add_argument("--test_config", type=str, required=True, help="test configuration JSON (as test.py's)")
    parser.add_argument("--codec", choices=list(CODECS), required=True, help="x264, x265, vvc (vvenc) or av1 (libaom)")
    parser.add_argument("--rate_num", type=int, help="number of rates (default: 4, or as many as --qp gives)")
    parser.add_argument("--qp", type=int, nargs="+", help="the QPs (AV1: cq-levels), one per rate (default: "
                                                          "--rate_num QPs spread over the codec's range)")
    parser.add_argument("--preset", type=str, help="encoder preset (default: veryslow for x264 / x265, slower for "
                                                   "vvc, cpu-used 1 for av1)")
    parser.add_argument("--threads", type=int_in(1, 1 << 16), default=1,
                        help="encoder threads per job (default 1: the same streams on every machine)")
    parser.add_argument("--ffmpeg", type=str, help="FFmpeg binary (default: imageio-ffmpeg's, else ffmpeg on PATH)")
    parser.add_argument("--worker", "-w", type=int, default=1, help="worker processes")
    parser.add_argument("--output_path", type=str, required=True, help="result JSON")
    add_overwrite_arg(parser)
    add_quiet_arg(parser)
    add_resume_arg(parser)
    return parser.parse_args(argv)


def _init_worker(number: int) -> None:
    plain_warnings()
    deterministic(1)


def main(argv: Optional[List[str]] = None) -> int:
    begin = time.time()
    args = parse_args(argv)
    codec = CODECS[args.codec]
    if args.worker < 1:
        raise SevcError(f"--worker must be at least 1, got {args.worker}")
    qps = anchor_qps(codec, args.rate_num, args.qp)
    check_file(args.output_path, is_result_file, args.overwrite, [args.test_config])
    binary = ffmpeg.find_ffmpeg(args.ffmpeg)
    if codec.encoder not in ffmpeg.encoders(binary):
        raise AnchorError(f"{binary} has no {codec.encoder} encoder (--codec {args.codec}): pip install -U "
                          "imageio-ffmpeg, or pass --ffmpeg with a build that has it")
    sequences = load_test_config(args.test_config)
    inputs = [args.test_config, *(sequence.source for sequence in sequences)]
    check_file(args.output_path, is_result_file, args.overwrite, inputs)
    for sequence in sequences:
        check_sequence(sequence)
    check_sources(sequences)
    jobs = [AnchorJob(sequence, k, qp) for sequence in sequences for k, qp in enumerate(qps)]
    coder = Coder(codec, args.preset or codec.preset, args.threads, binary)
    cluster = Cluster.from_env()
    if cluster.main:
        print(f"coding {len(qps)} rates with {codec.encoder} (preset {coder.preset}): QP {qps}")
    settings = {"encoder": codec.encoder, "ffmpeg": ffmpeg.version(binary)}
    descriptions = [job_description(job, {"qp": job.qp, "options": coder.options(job), **settings}) for job in jobs]
    worker = Worker(_init_worker, (), code_sequence, coder)
    return evaluate_jobs(jobs, descriptions, worker, args, cluster, inputs, begin)


def entry() -> int:
    return run(main)
