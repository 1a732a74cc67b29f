"""What test.py and anchors.py share: running the (sequence, rate) jobs of a test configuration in
one process, in worker processes (-w N) or over the ranks of torchrun / srun, persisting each
finished job (`--resume` continues an interrupted run), and writing the result file."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..errors import SevcError
from ..eval.distributed import Cluster, Outcome
from ..eval.evaluation import is_result_file
from ..eval.records import JobRecords, records_folder
from ..eval.runner import Worker, execute
from ..io.outputs import atomic_file
from .common import progress


def add_resume_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: skip the jobs recorded in OUTPUT_PATH.jobs/")


def job_description(job, settings: Dict) -> Dict:
    """What determines a job's record, as JSON: its sequence (dataset, name, source, size, frames,
    intra period, colour conversion), its rate ("000", ...) and `settings`."""
    sequence = {name: str(value) if isinstance(value, Path) else value for name, value in asdict(job.sequence).items()}
    return {"dataset": sequence.pop("dataset"), "sequence": sequence.pop("name"), "rate": f"{job.rate_index:03d}",
            **sequence, **settings}


def _key(job) -> Tuple[str, str, str]:
    return job.sequence.dataset, job.sequence.name, f"{job.rate_index:03d}"


Plan = Tuple[Dict[int, dict], List[int]]  # (finished records {job index: record}, indices of the jobs to run)


def _plan(records: JobRecords, args: argparse.Namespace, cluster: Cluster, count: int) -> Plan:
    """The run's plan, decided by rank 0 (the others get the jobs to run)."""
    finished: Dict[int, dict] = {}
    pending, error = None, None
    if cluster.main:
        try:
            finished = records.prepare(args.resume)
            pending = [index for index in range(count) if index not in finished]
        except SevcError as exc:
            if cluster.store is None:
                raise
            error = str(exc)
    return finished, cluster.share_plan(pending, error)


class _Collector:
    """Rank 0's view of the run: the records and failures so far, and the progress bar."""

    def __init__(self, jobs: Sequence, finished: Dict[int, dict], bar: tqdm):
        self.jobs, self.bar = jobs, bar
        self.results = dict(finished)
        self.failures: Dict[int, str] = {}

    @property
    def done(self) -> bool:
        return len(self.results) + len(self.failures) == len(self.jobs)

    def add(self, outcome: Outcome) -> None:
        """Take a finished job's record, or report its failure."""
        index, record, error = outcome
        dataset, name, rate = _key(self.jobs[index])
        if error is None:
            self.results[index] = record
            self.bar.set_postfix_str(f"{self.jobs[index].label}: {record['ave_all_frame_bpp']:.4f} bpp "
                                     f"{record['ave_all_frame_psnr']:.2f} dB")
        else:
            self.failures[index] = f"{dataset}/{name} rate {int(rate)}: {error}"
            tqdm.write(f"failed: {self.failures[index]}", file=sys.stderr)
        self.bar.update()


def _run(jobs: Sequence, pending: List[int], worker: Worker, processes: int, records: JobRecords,
         cluster: Cluster, collector: Optional[_Collector]) -> None:
    """Run this rank's share of the pending jobs, persisting each record; rank 0 also collects
    the other ranks' outcomes until every job is accounted for."""
    for position, record, error in execute(worker, [jobs[k] for k in pending], cluster.claims(len(pending)),
                                           processes):
        outcome = (pending[position], record, error)
        if record is not None:
            records.save(outcome[0], record)
        if collector is None:
            cluster.post(outcome)
            continue
        collector.add(outcome)
        for remote in cluster.arrived():
            collector.add(remote)
    while collector is not None and not collector.done:
        cluster.wait()
        for remote in cluster.arrived():
            collector.add(remote)


def evaluate_jobs(jobs: Sequence, descriptions: List[Dict], worker: Worker, args: argparse.Namespace,
                  cluster: Cluster, inputs: Sequence[str], begin: float) -> int:
    """Run `jobs` (described by `descriptions`, see `job_description`; each with a `label`) and, on
    rank 0, write the result file `args.output_path` ({dataset: {sequence: {"000": record}}}, in
    job order; nothing if every job failed) and report; the exit status (1 if a job failed: the
    others are still written)."""
    records = JobRecords(records_folder(args.output_path), descriptions)
    finished, pending = _plan(records, args, cluster, len(jobs))
    if finished:
        print(f"resuming: {len(finished)} of {len(jobs)} jobs were done (records in {records.folder})")
    with progress(len(jobs), "job", args.quiet or not cluster.main, initial=len(finished)) as bar:
        collector = _Collector(jobs, finished, bar) if cluster.main else None
        _run(jobs, pending, worker, args.worker, records, cluster, collector)
    if collector is None:
        return 0
    log: Dict[str, Dict[str, Dict[str, dict]]] = {}
    for index, job in enumerate(jobs):
        if index in collector.results:
            dataset, name, rate = _key(job)
            log.setdefault(dataset, {}).setdefault(name, {})[rate] = collector.results[index]
    if log:
        with atomic_file(args.output_path, is_result_file, args.overwrite, inputs) as path:
            path.write_text(json.dumps(log, indent=2))
    tested = [job for index, job in enumerate(jobs) if index in collector.results]
    sequences = len({_key(job)[:2] for job in tested})
    written = f"results in {args.output_path}" if log else "no results written"
    print(f"tested {sum(job.sequence.frames for job in tested)} frames ({sequences} sequences, {len(tested)} of "
          f"{len(jobs)} sequence-rate jobs) in {(time.time() - begin) / 60:.1f} min; {written}")
    for index in sorted(collector.failures):
        print(f"error: {collector.failures[index]}", file=sys.stderr)
    if collector.failures:
        count = len(collector.failures)
        print(f"{count} job{'s' * (count > 1)} failed: run again with --resume to retry only the failed ones (the "
              f"finished ones are recorded in {records.folder})", file=sys.stderr)
        return 1
    records.remove()
    return 0
