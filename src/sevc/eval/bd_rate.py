"""BD-rate, paper-style tables and RD curves from test.py result files.

A result file is test.py's JSON, `{dataset: {sequence: {"000": record, ...}}}`; anchors
(VTM, HM, DCVC-DC, ...) are given in the same schema. Per dataset, BD-rate (Bjontegaard, cubic
fit over log-rate, `bd-metric`) is computed per sequence against the anchor on the sequences
both files hold, then averaged over the sequences; "Average" is the mean over the datasets,
as in the paper's Tables 1 and 2. Negative numbers are bit savings.

A sequence whose curves BD-rate cannot compare (too few rates, repeated points, non-finite
values, quality ranges that do not overlap, ...) is not comparable: it gets a reason instead of
a number and is left out of the averages; a dataset (or "Average") with nothing comparable is
None, with a reason.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from bd_metric.bjontegaard_metric import BD_RATE

from ..errors import NotComparable, ReportError
from ..io.reading import load_json
from .metrics import MS_SSIM_MIN_SIDE

METRICS = {"psnr": "ave_all_frame_psnr", "msssim": "ave_all_frame_msssim"}
METRIC_NAMES = {"psnr": "PSNR", "msssim": "MS-SSIM"}
MISSING_REASONS = {"msssim": f" (test.py reports it as null for frames under {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE})"}
BPP = "ave_all_frame_bpp"
REQUIRED = (BPP, METRICS["psnr"])  # record keys that must be numbers; MS-SSIM may be null or absent
MIN_RATES = 4
NOT_COMPARABLE = "n/c"
AVERAGE = "Average"  # the tables' column of the mean over the datasets

Curve = Tuple[np.ndarray, np.ndarray]  # (bpp, quality), sorted by rate
Results = Dict[str, Dict[str, Dict[str, dict]]]
Outcome = Union[float, str]  # a sequence's BD-rate in percent, or why it is not comparable


def _shown(value: object) -> str:
    """`value` as a user sees it in a JSON file, shortened."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(name: str) -> str:
    """A dataset, sequence, rate or codec name for a one-line message (quoted if not printable)."""
    return name if name.isprintable() else json.dumps(name)


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
            raise ReportError(f"{path}: {_key(dataset)}: must be an object {{sequence: {{rate: record}}}}, "
                              f"got {_shown(sequences)}")
        for sequence, rates in sequences.items():
            if not isinstance(rates, dict):
                raise ReportError(f"{path}: {_key(dataset)}/{_key(sequence)}: rates must be an object "
                                  f'{{"000": record, ...}}, got {_shown(rates)}')
            for rate, record in rates.items():
                _check_record(record, f"{path}: {_key(dataset)}/{_key(sequence)}/{json.dumps(rate)}")


def load_results(path: str | os.PathLike) -> Results:
    """A test.py result file (read with a bound, see `sevc.io.reading.load_json`), checked against
    the schema."""
    results = load_json(path, "result", ReportError)
    check_results(results, str(path))
    return results


def sequence_curve(rates: Dict[str, dict], metric: str, role: str = "curve") -> Optional[Curve]:
    """A sequence's RD points for `metric` ('psnr' or 'msssim'); None if the metric is null at
    every rate (MS-SSIM of small frames). NotComparable if it is null at some rates only;
    `role` names the curve in that message."""
    points = [(record[BPP], record.get(METRICS[metric])) for record in rates.values()]
    missing = [rate for rate, (_, quality) in zip(rates, points) if quality is None]
    if missing and len(missing) == len(points):
        return None
    if missing:
        raise NotComparable(f"{role} has no {METRIC_NAMES[metric]} at rate {_key(missing[0])} but has it at others")
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


def _where(entry: Dict[str, Optional[str]]) -> str:
    """A not-comparable entry's dataset/sequence, or dataset."""
    dataset, sequence = entry["dataset"], entry["sequence"]
    return _key(dataset) if sequence is None else f"{_key(dataset)}/{_key(sequence)}"


def not_comparable_messages(summary: Summary, anchor_name: str) -> Iterator[str]:
    """One line per not-comparable sequence."""
    for metric, per_codec in summary.items():
        for codec, comparison in per_codec.items():
            for entry in comparison.not_comparable:
                if entry["sequence"] is not None:
                    yield (f"{METRIC_NAMES[metric]} BD-rate of {_key(codec)} against {_key(anchor_name)} on "
                           f"{_where(entry)} is not comparable: {entry['reason']}")


def check_comparable(summary: Summary) -> None:
    """ReportError unless some codec has a BD-rate on some metric."""
    if not any(c.comparable for per_codec in summary.values() for c in per_codec.values()):
        raise ReportError("no sequence of any result file is comparable with the anchor (see the warnings)")


def summary_json(summary: Summary, anchor_name: str) -> dict:
    """bd_rate.json: {"anchor": name, "bd_rate": {metric: {codec: table}},
    "not_comparable": {metric: {codec: [{"dataset", "sequence", "reason"}, ...]}}}."""
    return {"anchor": anchor_name,
            "bd_rate": {m: {c: comparison.table for c, comparison in per_codec.items()}
                        for m, per_codec in summary.items()},
            "not_comparable": {m: {c: comparison.not_comparable for c, comparison in per_codec.items()}
                               for m, per_codec in summary.items()}}


def _md(text: str) -> str:
    """`text` as one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _cell(table: Dict[str, Optional[float]], column: str) -> str:
    """A table cell: the BD-rate, n/c, or - where the files share no sequence of that dataset."""
    if column not in table:
        return "-"
    value = table[column]
    if value is None:
        return NOT_COMPARABLE
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def markdown_table(per_codec: Dict[str, Comparison], anchor: str, metric: str) -> str:
    """One table like the paper's: a row per codec, a column per dataset and the average, then
    the reasons for each n/c cell and each not-comparable sequence."""
    columns = list(dict.fromkeys(c for comparison in per_codec.values() for c in comparison.table if c != AVERAGE))
    columns.append(AVERAGE)
    lines = [f"BD-rate (%) for {METRIC_NAMES[metric]}, anchor: {anchor}", "",
             "| codec | " + " | ".join(map(_md, columns)) + " |", "|---" * (len(columns) + 1) + "|",
             f"| {_md(anchor)} | " + " | ".join("0.0" for _ in columns) + " |"]
    lines += [f"| {_md(codec)} | " + " | ".join(_cell(c.table, column) for column in columns) + " |"
              for codec, c in per_codec.items()]
    reasons = [f"- {_key(codec)}, {_where(e)}: {e['reason']}"
               for codec, c in per_codec.items() for e in c.not_comparable]
    if reasons:
        lines += ["", f"Not comparable ({NOT_COMPARABLE}; left out of the averages):", *reasons]
    return "\n".join(lines) + "\n"


def dataset_curve(results: Results, dataset: str, metric: str) -> Optional[Curve]:
    """The dataset's RD curve: bpp and quality averaged over its sequences at each rate index;
    None if a sequence lacks the metric or has another number of rates."""
    try:
        curves = [sequence_curve(rates, metric) for rates in results[dataset].values()]
    except NotComparable:
        return None
    if not curves or any(c is None or len(c[0]) != len(curves[0][0]) for c in curves):
        return None
    return np.mean([c[0] for c in curves], axis=0), np.mean([c[1] for c in curves], axis=0)


def _plain(text: str) -> str:
    """`text` for matplotlib, shown as it is (no math mode)."""
    return text.replace("$", "\\$")


def plot_file_name(dataset: str, metric: str) -> str:
    """rd_<dataset>_<metric>.png, with characters a file name should not hold replaced."""
    return f"rd_{re.sub(r'[^A-Za-z0-9._-]', '_', dataset)[:100]}_{metric}.png"


def plot_rd_curves(results: Dict[str, Results], dataset: str, metric: str, path: str | os.PathLike) -> bool:
    """RD curves of every codec on `dataset` as a PNG; False if no codec has a curve there."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4), dpi=120)
    drawn = False
    for codec, result in results.items():
        curve = dataset_curve(result, dataset, metric) if dataset in result else None
        if curve is not None:
            axes.plot(curve[0], curve[1], marker="o", label=_plain(codec))
            drawn = True
    if drawn:
        axes.set(title=_plain(dataset), xlabel="bpp", ylabel="PSNR (dB)" if metric == "psnr" else "MS-SSIM")
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path)
    plt.close(figure)
    return drawn


def write_report(anchor_name: str, anchor: Results, tests: Dict[str, Results], summary: Summary,
                 out_dir: Path) -> None:
    """Write bd_rate.json, bd_rate.md and rd_<dataset>_<metric>.png of `summary` into `out_dir`
    (which exists)."""
    (out_dir / "bd_rate.json").write_text(json.dumps(summary_json(summary, anchor_name), indent=2))
    tables = [markdown_table(per_codec, anchor_name, metric) for metric, per_codec in summary.items()]
    tables += [f"No BD-rate for {METRIC_NAMES[metric]}: no result file has {METRIC_NAMES[metric]} values for the "
               f"anchor's sequences{MISSING_REASONS.get(metric, '')}.\n" for metric in METRICS if metric not in summary]
    (out_dir / "bd_rate.md").write_text("\n".join(tables))
    curves = {anchor_name: anchor, **tests}
    for metric in summary:
        for dataset in anchor:
            plot_rd_curves(curves, dataset, metric, out_dir / plot_file_name(dataset, metric))


def parse_named(values: List[str]) -> List[Tuple[str, str]]:
    """NAME=path.json arguments (a bare path is named after its file)."""
    named = []
    for value in values:
        name, sep, path = value.partition("=")
        named.append((name, path) if sep else (Path(value).stem, value))
    return named
