"""BD-rate, paper-style tables and RD curves from test.py result files.

A result file is test.py's JSON, `{dataset: {sequence: {"000": record, ...}}}`; anchors
(VTM, HM, DCVC-DC, ...) are given in the same schema. Per dataset, BD-rate (Bjontegaard, cubic
fit over log-rate, `bd-metric`) is computed per sequence against the anchor on the sequences
both files hold, then averaged over the sequences; "Average" is the mean over the datasets,
as in the paper's Tables 1 and 2. Negative numbers are bit savings.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from bd_metric.bjontegaard_metric import BD_RATE

from .errors import SevcError

METRICS = {"psnr": "ave_all_frame_psnr", "msssim": "ave_all_frame_msssim"}
BPP = "ave_all_frame_bpp"
MIN_RATES = 4

Curve = Tuple[np.ndarray, np.ndarray]  # (bpp, quality), sorted by rate
Results = Dict[str, Dict[str, Dict[str, dict]]]


class ReportError(SevcError):
    """Result files that cannot be compared."""


def load_results(path: str | os.PathLike) -> Results:
    """A test.py result file."""
    try:
        results = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise ReportError(f"{path} is not a test.py result file ({{dataset: {{sequence: {{rate: ...}}}}}})")
    return results


def sequence_curve(rates: Dict[str, dict], metric: str) -> Optional[Curve]:
    """A sequence's RD points for `metric` ('psnr' or 'msssim'); None if a point lacks it."""
    points = []
    for record in rates.values():
        quality = record.get(METRICS[metric])
        if quality is None or record.get(BPP) is None:
            return None
        points.append((record[BPP], quality))
    points.sort()
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def bd_rate(anchor: Curve, test: Curve) -> float:
    """BD-rate in percent of `test` against `anchor`."""
    if min(len(anchor[0]), len(test[0])) < MIN_RATES:
        raise ReportError(f"BD-rate needs at least {MIN_RATES} rates per curve")
    return float(BD_RATE(anchor[0], anchor[1], test[0], test[1]))


def dataset_bd_rates(anchor: Results, test: Results, metric: str) -> Dict[str, float]:
    """{dataset: mean BD-rate over its sequences (%)} over the datasets both results hold,
    plus "Average" (mean over the datasets)."""
    table = {}
    for dataset in anchor:
        if dataset not in test:
            continue
        values = []
        for sequence, rates in anchor[dataset].items():
            if sequence not in test[dataset]:
                continue
            curves = sequence_curve(rates, metric), sequence_curve(test[dataset][sequence], metric)
            if None not in curves:
                values.append(bd_rate(*curves))
        if values:
            table[dataset] = float(np.mean(values))
    if not table:
        raise ReportError(f"no sequence with {metric} results is in both files")
    table["Average"] = float(np.mean(list(table.values())))
    return table


def dataset_curve(results: Results, dataset: str, metric: str) -> Optional[Curve]:
    """The dataset's RD curve: bpp and quality averaged over its sequences at each rate index."""
    curves = [sequence_curve(rates, metric) for rates in results[dataset].values()]
    if not curves or any(c is None or len(c[0]) != len(curves[0][0]) for c in curves):
        return None
    return np.mean([c[0] for c in curves], axis=0), np.mean([c[1] for c in curves], axis=0)


def markdown_table(bd_rates: Dict[str, Dict[str, float]], anchor: str, metric: str) -> str:
    """One table like the paper's: a row per codec, a column per dataset and the average."""
    columns = [c for c in next(iter(bd_rates.values())) if c != "Average"] + ["Average"]
    lines = [f"BD-rate (%) for {metric.upper() if metric == 'psnr' else 'MS-SSIM'}, anchor: {anchor}", "",
             "| codec | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|",
             f"| {anchor} | " + " | ".join("0.0" for _ in columns) + " |"]
    for codec, table in bd_rates.items():
        cells = [f"{table[c]:.1f}" if c in table and math.isfinite(table[c]) else "-" for c in columns]
        lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
            axes.plot(curve[0], curve[1], marker="o", label=codec)
            drawn = True
    if drawn:
        axes.set(title=dataset, xlabel="bpp", ylabel="PSNR (dB)" if metric == "psnr" else "MS-SSIM")
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path)
    plt.close(figure)
    return drawn


def report(anchor_name: str, anchor: Results, tests: Dict[str, Results], out_dir: Path,
           metrics: Sequence[str] = ("psnr", "msssim")) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Write bd_rate.json, bd_rate.md and rd_<dataset>_<metric>.png into `out_dir` (which
    exists); returns {metric: {codec: {dataset: BD-rate}}}. A metric no codec can be compared
    on (e.g. MS-SSIM of small frames) is left out."""
    summary: Dict[str, Dict[str, Dict[str, float]]] = {}
    for metric in metrics:
        per_codec = {}
        for name, result in tests.items():
            try:
                per_codec[name] = dataset_bd_rates(anchor, result, metric)
            except ReportError:
                if metric == "psnr":
                    raise
        if per_codec:
            summary[metric] = per_codec
    if not summary:
        raise ReportError("nothing to compare")
    (out_dir / "bd_rate.json").write_text(json.dumps({"anchor": anchor_name, "bd_rate": summary}, indent=2))
    tables = [markdown_table(per_codec, anchor_name, metric) for metric, per_codec in summary.items()]
    (out_dir / "bd_rate.md").write_text("\n".join(tables))
    curves = {anchor_name: anchor, **tests}
    for metric in summary:
        for dataset in anchor:
            plot_rd_curves(curves, dataset, metric, out_dir / f"rd_{dataset}_{metric}.png")
    return summary


def parse_named(values: List[str]) -> List[Tuple[str, str]]:
    """NAME=path.json arguments (a bare path is named after its file)."""
    named = []
    for value in values:
        name, sep, path = value.partition("=")
        named.append((name, path) if sep else (Path(value).stem, value))
    return named
