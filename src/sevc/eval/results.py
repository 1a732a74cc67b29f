"""test.py's result files: `{dataset: {sequence: {"000": record, ...}}}` (anchors, VTM, HM,
DCVC-DC, ..., are given in the same schema), their schema checked as they are read.

A record must hold the average bpp and PSNR as numbers; its MS-SSIM may be null or absent (frames
too small for it). No dataset may be named "Average", the BD-rate tables' column of the mean
over the datasets.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Dict

from ..errors import ReportError
from ..io.reading import load_json

METRICS = {"psnr": "ave_all_frame_psnr", "msssim": "ave_all_frame_msssim"}  # a metric's record key
METRIC_NAMES = {"psnr": "PSNR", "msssim": "MS-SSIM"}
BPP = "ave_all_frame_bpp"
REQUIRED = (BPP, METRICS["psnr"])  # record keys that must be numbers; MS-SSIM may be null or absent
AVERAGE = "Average"  # the tables' column of the mean over the datasets

Results = Dict[str, Dict[str, Dict[str, dict]]]


def shown_name(name: str) -> str:
    """A dataset, sequence, rate or codec name for a one-line message (quoted if not printable)."""
    return name if name.isprintable() else json.dumps(name)


def _shown(value: object) -> str:
    """`value` as a user sees it in a JSON file, shortened."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value: object) -> bool:
    """A JSON number a float can hold (NaN and infinities included; not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, float) or abs(value) <= sys.float_info.max


def _check_record(record: object, where: str) -> None:
    """Check one rate record; `where` is its JSON path."""
    if not isinstance(record, dict):
        raise ReportError(f"{where}: must be an object (a rate record), got {_shown(record)}")
    for key in REQUIRED:
        if key not in record:
            raise ReportError(f"{where}: {key} is missing")
        if not _is_number(record[key]):
            raise ReportError(f"{where}: {key} must be a number, got {_shown(record[key])}")
    msssim = record.get(METRICS["msssim"])
    if msssim is not None and not _is_number(msssim):
        raise ReportError(f"{where}: {METRICS['msssim']} must be a number or null, got {_shown(msssim)}")


def check_results(results: object, path: str) -> None:
    """Check that `results`, read from `path`, has the result file schema; a ReportError names
    the file, the JSON path and the problem."""
    if not isinstance(results, dict):
        raise ReportError(f"{path}: must be an object {{dataset: {{sequence: {{rate: record}}}}}}, "
                          f"got {_shown(results)}")
    for dataset, sequences in results.items():
        if dataset == AVERAGE:
            raise ReportError(f"{path}: {AVERAGE}: a dataset may not be named {AVERAGE} (the tables' mean column)")
        if not isinstance(sequences, dict):
            raise ReportError(f"{path}: {shown_name(dataset)}: must be an object {{sequence: {{rate: record}}}}, "
                              f"got {_shown(sequences)}")
        for sequence, rates in sequences.items():
            if not isinstance(rates, dict):
                raise ReportError(f"{path}: {shown_name(dataset)}/{shown_name(sequence)}: rates must be an object "
                                  f'{{"000": record, ...}}, got {_shown(rates)}')
            for rate, record in rates.items():
                _check_record(record, f"{path}: {shown_name(dataset)}/{shown_name(sequence)}/{json.dumps(rate)}")


def load_results(path: str | os.PathLike) -> Results:
    """A test.py result file (read with a bound, see `sevc.io.reading.load_json`), checked against
    the schema."""
    results = load_json(path, "result", ReportError)
    check_results(results, str(path))
    return results
