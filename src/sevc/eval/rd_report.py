"""The BD-rate report of `sevc.eval.bd_rate`'s comparisons: bd_rate.json, paper-style Markdown
tables (bd_rate.md), RD curves (rd_<dataset>_<metric>.png), and the warnings for sequences that
are not comparable."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, Iterator, Optional

import numpy as np

from ..errors import NotComparable
from .bd_rate import Comparison, Curve, Summary, sequence_curve
from .metrics import MS_SSIM_MIN_SIDE
from .results import AVERAGE, METRIC_NAMES, METRICS, Results, shown_name

MISSING_REASONS = {"msssim": f" (test.py reports it as null for frames under {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE})"}
NOT_COMPARABLE = "n/c"


def _where(entry: Dict[str, Optional[str]]) -> str:
    """A not-comparable entry's dataset/sequence, or dataset."""
    dataset, sequence = entry["dataset"], entry["sequence"]
    return shown_name(dataset) if sequence is None else f"{shown_name(dataset)}/{shown_name(sequence)}"


def not_comparable_messages(summary: Summary, anchor_name: str) -> Iterator[str]:
    """One line per not-comparable sequence."""
    for metric, per_codec in summary.items():
        for codec, comparison in per_codec.items():
            for entry in comparison.not_comparable:
                if entry["sequence"] is not None:
                    yield (f"{METRIC_NAMES[metric]} BD-rate of {shown_name(codec)} against "
                           f"{shown_name(anchor_name)} on {_where(entry)} is not comparable: {entry['reason']}")


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
    reasons = [f"- {shown_name(codec)}, {_where(e)}: {e['reason']}"
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
