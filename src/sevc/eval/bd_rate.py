"""BD-rate of test.py result files (see `sevc.eval.results`) against an anchor's.

Per dataset, BD-rate (Bjontegaard, cubic fit over log-rate, `bd-metric`) is computed per
sequence against the anchor on the sequences both files hold, then averaged over the sequences;
"Average" is the mean over the datasets, as in the paper's Tables 1 and 2. Negative numbers are
bit savings.

A sequence whose curves BD-rate cannot compare (too few rates, repeated points, non-finite
values, quality ranges that do not overlap, ...) is not comparable: it gets a reason instead of
a number and is left out of the averages; a dataset (or "Average") with nothing comparable is
None, with a reason. The tables, plots and report files are `sevc.eval.rd_report`'s.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from bd_metric.bjontegaard_metric import BD_RATE

from ..errors import NotComparable, ReportError
from .results import AVERAGE, BPP, METRIC_NAMES, METRICS, Results, shown_name

MIN_RATES = 4

Curve = Tuple[np.ndarray, np.ndarray]  # (bpp, quality), sorted by rate
Outcome = Union[float, str]  # a sequence's BD-rate in percent, or why it is not comparable


def sequence_curve(rates: Dict[str, dict], metric: str, role: str = "curve") -> Optional[Curve]:
    """A sequence's RD points for `metric` ('psnr' or 'msssim'); None if the metric is null at
    every rate (MS-SSIM of small frames). NotComparable if it is null at some rates only;
    `role` names the curve in that message."""
    points = [(record[BPP], record.get(METRICS[metric])) for record in rates.values()]
    missing = [rate for rate, (_, quality) in zip(rates, points) if quality is None]
    if missing and len(missing) == len(points):
        return None
    if missing:
        raise NotComparable(f"{role} has no {METRIC_NAMES[metric]} at rate {shown_name(missing[0])} "
                            "but has it at others")
    points.sort()
    return np.array([float(p[0]) for p in points]), np.array([float(p[1]) for p in points])


def _check_curve(curve: Curve, role: str) -> None:
    """NotComparable unless `curve` (the `role` one) can be fitted: enough rates, finite values,
    bpp above 0, no bpp or quality twice."""
    bpp, quality = curve
    if len(bpp) < MIN_RATES:
        raise NotComparable(f"{role} has {len(bpp)} rate{'' if len(bpp) == 1 else 's'}, "
                            f"BD-rate needs at least {MIN_RATES}")
    for name, values in (("bpp", bpp), ("quality", quality)):
        if not np.all(np.isfinite(values)):
            raise NotComparable(f"{role} has a {name} that is not finite ({values[~np.isfinite(values)][0]})")
        unique, counts = np.unique(values, return_counts=True)
        if counts.max() > 1:
            raise NotComparable(f"{role} has the same {name} ({unique[counts > 1][0]:g}) at two rates")
    if bpp[0] <= 0:
        raise NotComparable(f"{role} has a bpp of {bpp[0]:g}; bpp must be above 0")


def _span(quality: np.ndarray) -> str:
    """A quality range, for messages."""
    return f"{quality.min():.6g} to {quality.max():.6g}"


def bd_rate(anchor: Curve, test: Curve) -> float:
    """BD-rate in percent of `test` against `anchor`; NotComparable if the curves cannot be
    compared or the result is not finite."""
    _check_curve(anchor, "anchor")
    _check_curve(test, "test")
    if min(anchor[1].max(), test[1].max()) <= max(anchor[1].min(), test[1].min()):
        raise NotComparable(f"quality ranges do not overlap (anchor {_span(anchor[1])}, test {_span(test[1])})")
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(BD_RATE(anchor[0], anchor[1], test[0], test[1]))
    except (ValueError, ArithmeticError) as exc:
        raise NotComparable(f"the cubic fit failed ({exc})") from None
    if not math.isfinite(value):
        raise NotComparable(f"BD-rate is not finite ({value})")
    return value


def sequence_bd_rate(anchor_rates: Dict[str, dict], test_rates: Dict[str, dict], metric: str) -> Optional[Outcome]:
    """One sequence's BD-rate (%) or why it is not comparable; None if either file lacks the metric."""
    try:
        anchor = sequence_curve(anchor_rates, metric, "anchor")
        test = sequence_curve(test_rates, metric, "test")
        return None if anchor is None or test is None else bd_rate(anchor, test)
    except NotComparable as exc:
        return str(exc)


@dataclass
class Comparison:
    """One codec against the anchor on one metric.

    table: {dataset: mean BD-rate (%) over its comparable sequences, or None; "Average": mean
    over the datasets that have one, or None}. not_comparable: one {"dataset", "sequence",
    "reason"} per not-comparable sequence, then one per None in the table ("sequence" None)."""
    table: Dict[str, Optional[float]]
    not_comparable: List[Dict[str, Optional[str]]]

    @property
    def comparable(self) -> bool:
        """Whether at least one sequence has a BD-rate."""
        return self.table[AVERAGE] is not None


def _mean(values: List[float]) -> Optional[float]:
    """The mean of `values`; None if there are none."""
    return float(np.mean(values)) if values else None


def tabulate(sequences: Dict[str, Dict[str, Outcome]]) -> Comparison:
    """The Comparison of {dataset: {sequence: BD-rate (%) or why it is not comparable}}."""
    table: Dict[str, Optional[float]] = {}
    not_comparable: List[Dict[str, Optional[str]]] = []
    for dataset, outcomes in sequences.items():
        table[dataset] = _mean([v for v in outcomes.values() if not isinstance(v, str)])
        not_comparable += [{"dataset": dataset, "sequence": sequence, "reason": reason}
                           for sequence, reason in outcomes.items() if isinstance(reason, str)]
    table[AVERAGE] = _mean([v for v in table.values() if v is not None])
    not_comparable += [{"dataset": dataset, "sequence": None,
                        "reason": "no comparable dataset" if dataset == AVERAGE else "no comparable sequence"}
                       for dataset, value in table.items() if value is None]
    return Comparison(table, not_comparable)


def compare(anchor: Results, test: Results, metric: str) -> Optional[Comparison]:
    """`test` against `anchor` on `metric`, over the datasets and sequences both hold; None if no
    sequence in both has the metric."""
    sequences: Dict[str, Dict[str, Outcome]] = {}
    for dataset in anchor:
        for sequence, rates in anchor[dataset].items():
            if sequence in test.get(dataset, {}):
                outcome = sequence_bd_rate(rates, test[dataset][sequence], metric)
                if outcome is not None:
                    sequences.setdefault(dataset, {})[sequence] = outcome
    return tabulate(sequences) if sequences else None


def dataset_bd_rates(anchor: Results, test: Results, metric: str) -> Dict[str, Optional[float]]:
    """The table of `test` against `anchor` on `metric` (see Comparison.table)."""
    comparison = compare(anchor, test, metric)
    if comparison is None:
        raise ReportError(f"no sequence with {metric} results is in both files")
    return comparison.table


Summary = Dict[str, Dict[str, Comparison]]  # {metric: {codec: comparison}}


def summarize(anchor_name: str, anchor: Results, tests: Dict[str, Results],
              metrics: Sequence[str] = ("psnr", "msssim")) -> Summary:
    """Every codec against the anchor on every metric. A codec sharing no sequence with the anchor
    is a ReportError; on other metrics (MS-SSIM of small frames) such a codec is left out, and a
    metric no codec has is left out."""
    summary: Summary = {}
    for metric in metrics:
        per_codec = {}
        for name, result in tests.items():
            comparison = compare(anchor, result, metric)
            if comparison is not None:
                per_codec[name] = comparison
            elif metric == "psnr":
                raise ReportError(f"no sequence with {metric} results is in both files ({anchor_name} and {name})")
        if per_codec:
            summary[metric] = per_codec
    return summary


def check_comparable(summary: Summary) -> None:
    """ReportError unless some codec has a BD-rate on some metric."""
    if not any(c.comparable for per_codec in summary.values() for c in per_codec.values()):
        raise ReportError("no sequence of any result file is comparable with the anchor (see the warnings)")
