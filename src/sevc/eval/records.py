"""Finished jobs of test.py and anchors.py, one small record file each, so that an interrupted run
resumes where it stopped (`--resume`).

The records of the result file `r.json` live in the folder `r.json.jobs/`: `job-<16 hex>.json`
per job (the hex names its dataset, sequence and rate), written atomically as soon as the job is
done: `{"job": {what determines the result: dataset, sequence, rate, source, settings, ...},
"record": test.py's record}`. Like a result file, a record is sevc's by its whole schema; each
rank of a distributed run writes its own records, so no file is shared between writers. A
resumed run takes a record only if its "job" is exactly the job it would run; a record of other
settings or a file of a record's name that is not one stops it with an error. Once every job
has finished and the result file is written, the records are removed (and the folder, if
nothing else is left in it).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import JobRecordError, SevcError
from ..io.outputs import atomic_file
from ..io.reading import load_json
from .metrics import RECORD_KEYS
from .results import check_results

RECORD_NAME = re.compile(r"job-[0-9a-f]{16}\.json")
RECORD_LIMIT = 16 << 20  # bytes of one record (a record of a 100,000-frame sequence is about 10 MB)
_KEY = ("dataset", "sequence", "rate")  # the entries of a job description that name the job


def records_folder(output_path: str | os.PathLike) -> Path:
    """The folder of the job records of the result file `output_path`."""
    return Path(f"{output_path}.jobs")


def record_name(job: Dict) -> str:
    """The file name of the record of the job described by `job`."""
    key = json.dumps([job[name] for name in _KEY])
    return f"job-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def read_record(path: Path) -> Tuple[Dict, dict]:
    """(job description, record) of a record file; JobRecordError if it is not one."""
    try:
        content = load_json(path, "job record", JobRecordError, RECORD_LIMIT)
        if not isinstance(content, dict) or set(content) != {"job", "record"} or not isinstance(content["job"], dict):
            raise JobRecordError("not an object {\"job\": {...}, \"record\": {...}}")
        job, record = content["job"], content["record"]
        if not all(isinstance(job.get(name), str) for name in _KEY) or record_name(job) != path.name:
            raise JobRecordError("its job is not named by dataset, sequence and rate, or not by this file name")
        check_results({job["dataset"]: {job["sequence"]: {job["rate"]: record}}}, path.name)
        if not RECORD_KEYS <= set(record):
            raise JobRecordError(f"its record lacks {sorted(RECORD_KEYS - set(record))[0]}")
    except SevcError as exc:
        raise JobRecordError(f"{path} is not a job record sevc can resume ({exc}); delete it to run its job "
                             "again") from None
    return job, record


def _is_record(path: Path) -> bool:
    """The ownership test of a record file: one by its whole schema."""
    try:
        read_record(path)
    except JobRecordError:
        return False
    return True


class JobRecords:
    """The records of one run; `jobs` describes each job of the run (JSON-able dicts with at least
    "dataset", "sequence" and "rate", and everything else that determines its record)."""

    def __init__(self, folder: Path, jobs: List[Dict]):
        self.folder = folder
        self.jobs = jobs
        self._index = {record_name(job): index for index, job in enumerate(jobs)}

    def _names(self) -> List[str]:
        """The names of the record files in the folder (none if there is no folder)."""
        if not os.path.lexists(self.folder):
            return []
        if not self.folder.is_dir():
            raise JobRecordError(f"{self.folder} is not a folder, so it cannot hold this run's job records; move it")
        return sorted(name for name in os.listdir(self.folder) if RECORD_NAME.fullmatch(name))

    def prepare(self, resume: bool) -> Dict[int, dict]:
        """The records of finished jobs {job index: record} when resuming (a JobRecordError if any
        does not belong to this run or cannot be read), none otherwise (a JobRecordError if there
        are records: an earlier run is never discarded silently)."""
        names = self._names()
        if names and not resume:
            raise JobRecordError(f"{self.folder} holds {len(names)} finished job{'s' * (len(names) > 1)} of an "
                                 "earlier run: pass --resume to continue it, or delete the folder to start afresh")
        finished = {}
        for name in names:
            job, record = read_record(self.folder / name)
            index = self._index.get(name)
            if index is None or self.jobs[index] != job:
                which = "which this run does not have" if index is None else "with other settings than this run's"
                raise JobRecordError(f"{self.folder / name} records {job['dataset']}/{job['sequence']} rate "
                                     f"{job['rate']} {which}: resume with the same command and configuration, or "
                                     "delete the folder to start afresh")
            finished[index] = record
        return finished

    def save(self, index: int, record: dict) -> None:
        """Persist the record of job `index` (atomically: it is there whole or not at all)."""
        with atomic_file(self.folder / record_name(self.jobs[index]), _is_record) as path:
            path.write_text(json.dumps({"job": self.jobs[index], "record": record}))

    def remove(self) -> None:
        """Delete this run's records (and the folder, unless something else is in it)."""
        for name in self._names():
            if name in self._index and _is_record(self.folder / name):
                (self.folder / name).unlink()
        with contextlib.suppress(OSError):
            self.folder.rmdir()
