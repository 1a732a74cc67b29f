"""RD evaluation of test configurations (what test.py runs): sequences x rates, estimated bits.

A test configuration is the published JSON schema::

    {"root_path": "...",
     "test_classes": {"<dataset>": {"test": 1, "base_path": "...", "src_type": "png" | "yuv420",
                                    ["yuv_matrix": "bt601" | "bt709", "yuv_range": "limited" | "full",]
                                    "sequences": {"<name>": {"width": W, "height": H, "frames": N, "gop": G}}}}}

A png sequence is the folder `root_path/base_path/<name>` (im00001.png, ...); a yuv420 sequence
the file `root_path/base_path/<name>` or, if that does not exist, `<name>.yuv` beside it.
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..codec.schedule import DEFAULT_REFRESH_INTERVAL, FrameSchedule
from ..codec.video import VideoCodec
from ..errors import ConfigError, SevcError
from ..io.frames import COLOR_MATRICES, COLOR_RANGES, SOURCE_TYPES, available_frames, png_frames, png_size, read_frames
from ..io.reading import load_json
from ..limits import LimitError, check_frame_count, check_frame_size
from ..weights.models import Models
from ..models.rate import FINE_LEVELS, Rate
from ..numerics import Numerics, Precision
from ..psnr import psnr
from .metrics import RECORD_KEYS, msssim, sequence_record
from .results import load_results

LISTED_PROBLEMS = 5  # unreadable sequences named in one error


@dataclass(frozen=True)
class ConfigSequence:
    """One sequence of a test configuration."""

    dataset: str
    name: str
    source: Path
    src_type: str
    width: int
    height: int
    frames: int
    gop: int
    yuv_matrix: str = "bt601"
    yuv_range: str = "limited"


@dataclass(frozen=True)
class Job:
    """One sequence at one rate: I-frames at `i_rate`, P-frames at `p_rate`."""

    sequence: ConfigSequence
    rate_index: int
    i_rate: Rate
    p_rate: Rate

    @property
    def label(self) -> str:
        """The sequence and its rate, for progress output ('Beauty q63', 'Beauty anchor 2', 'Beauty I q5 P q10')."""
        def rate(r: Rate) -> str:
            return f"anchor {r.index}" if r.anchor else f"q{r.index}"

        rates = rate(self.i_rate) if self.i_rate == self.p_rate else f"I {rate(self.i_rate)} P {rate(self.p_rate)}"
        return f"{self.sequence.name} {rates}"


def rates_to_test(rate_num: int, anchor_num: int, i_q_indexes: Optional[Sequence[int]] = None,
               p_q_indexes: Optional[Sequence[int]] = None) -> List[Tuple[Rate, Rate]]:
    """The (I-frame, P-frame) rates test.py evaluates, as the published script picks them.

    Explicit I-frame q indexes are fine levels; otherwise 4 rates with a checkpoint of 4 anchors
    are the anchors, and any other `rate_num` (2..64) are fine levels spread evenly over 0..63.
    P-frames use the I-frame rates unless given their own q indexes (fine levels).
    """
    def levels(indexes: Sequence[int], flag: str) -> List[Rate]:
        if len(indexes) != rate_num:
            raise ValueError(f"{flag} has {len(indexes)} values, --rate_num is {rate_num}")
        return [Rate.level(q) for q in indexes]

    if i_q_indexes is not None:
        i_rates = levels(i_q_indexes, "--i_frame_q_indexes")
    elif rate_num == anchor_num == 4:
        i_rates = [Rate.of_anchor(k) for k in range(4)]
    elif 2 <= rate_num <= FINE_LEVELS:
        i_rates = [Rate.level(int(q + 0.5)) for q in np.linspace(0, FINE_LEVELS - 1, num=rate_num)]
    else:
        raise ValueError(f"--rate_num must be in 2..{FINE_LEVELS}, got {rate_num}")
    if p_q_indexes is None:
        return list(zip(i_rates, i_rates))
    if i_rates[0].anchor:
        raise ValueError(f"--p_frame_q_indexes are fine levels (0..{FINE_LEVELS - 1}): give --i_frame_q_indexes too")
    return list(zip(i_rates, levels(p_q_indexes, "--p_frame_q_indexes")))


def _field(mapping: dict, key: str, where: str, kind=None):
    if not isinstance(mapping, dict) or key not in mapping:
        raise ConfigError(f"{where}: missing \"{key}\"")
    value = mapping[key]
    if kind is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}: \"{key}\" must be {kind.__name__ if isinstance(kind, type) else kind}")
    return value


def _source(base: Path, name: str, src_type: str) -> Path:
    path = base / name
    if src_type == "yuv420" and not path.exists() and path.with_name(name + ".yuv").exists():
        return path.with_name(name + ".yuv")
    return path


def load_test_config(path: str | os.PathLike) -> List[ConfigSequence]:
    """The sequences of the datasets marked `"test": 1` in a test configuration file (read with a
    bound, see `sevc.io.reading.load_json`)."""
    config = load_json(path, "test configuration", ConfigError)
    root = Path(_field(config, "root_path", str(path), str))
    sequences = []
    for dataset, spec in _field(config, "test_classes", str(path), dict).items():
        where = f"{path}: test class {dataset}"
        if not _field(spec, "test", where, int):
            continue
        src_type = _field(spec, "src_type", where, str)
        if src_type not in SOURCE_TYPES:
            raise ConfigError(f"{where}: src_type must be one of {', '.join(SOURCE_TYPES)}, got {src_type!r}")
        matrix, color_range = spec.get("yuv_matrix", "bt601"), spec.get("yuv_range", "limited")
        if matrix not in COLOR_MATRICES or color_range not in COLOR_RANGES:
            raise ConfigError(f"{where}: yuv_matrix must be one of {', '.join(COLOR_MATRICES)} and yuv_range one "
                              f"of {', '.join(COLOR_RANGES)}")
        base = root / _field(spec, "base_path", where, str)
        for name, seq in _field(spec, "sequences", where, dict).items():
            values = [_field(seq, key, f"{where}, sequence {name}", int) for key in ("width", "height", "frames", "gop")]
            try:
                check_frame_size(values[0], values[1])
                check_frame_count(values[2])
            except LimitError as exc:
                raise ConfigError(f"{where}, sequence {name}: {exc}") from None
            sequences.append(ConfigSequence(dataset, name, _source(base, name, src_type), src_type, *values,
                                      yuv_matrix=matrix, yuv_range=color_range))
    if not sequences:
        raise ConfigError(f"{path}: no test class is marked \"test\": 1")
    return sequences


def _check_source(seq: ConfigSequence) -> None:
    """FrameError (or another SevcError) unless `seq`'s source holds its frames at its size."""
    available = available_frames(seq.source, seq.src_type, seq.width, seq.height)
    if available < seq.frames:
        raise ConfigError(f"{seq.source} holds {available} frames, {seq.frames} were asked for")
    if seq.src_type == "png":
        width, height = png_size(png_frames(seq.source)[0])
        if (width, height) != (seq.width, seq.height):
            raise ConfigError(f"{seq.source} holds frames of {width}x{height}, {seq.width}x{seq.height} were asked for")


def check_sources(sequences: Sequence[ConfigSequence]) -> None:
    """Check every sequence's input (its frames are there, as many as asked for, of its size: PNG
    headers and YUV file sizes, nothing decoded) before anything runs: one ConfigError naming every
    sequence that cannot be read."""
    problems = []
    for seq in sequences:
        try:
            _check_source(seq)
        except SevcError as exc:
            problems.append(f"{seq.dataset}/{seq.name}: {exc}")
    if problems:
        more = f"; and {len(problems) - LISTED_PROBLEMS} more" if len(problems) > LISTED_PROBLEMS else ""
        raise ConfigError(f"{len(problems)} sequence{'s' if len(problems) > 1 else ''} cannot be read: "
                          + "; ".join(problems[:LISTED_PROBLEMS]) + more)


def is_result_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a result file test.py writes, by its whole schema: what bd_rate.py reads,
    at least one record, every record with every key test.py writes (RECORD_KEYS)."""
    try:
        results = load_results(path)
    except SevcError:
        return False
    records = [record for sequences in results.values() for rates in sequences.values() for record in rates.values()]
    return bool(records) and all(RECORD_KEYS <= set(record) for record in records)


def evaluate_sequence(models: Models, job: Job, *, refresh_interval: int = DEFAULT_REFRESH_INTERVAL,
                      numerics: Numerics = Numerics.FLOAT, precision: Precision = Precision.FP32) -> Dict[str, object]:
    """test.py's record of one job (see `sevc.eval.metrics.sequence_record`), plus its `test_time`
    in seconds, in numerics mode `numerics` at `precision` (see VideoCodec). The per-frame
    numbers stay on the models' device until the sequence is done."""
    seq = job.sequence
    codec = VideoCodec(*models, FrameSchedule(seq.gop, refresh_interval), numerics, precision)
    sources = (x.to(models.device) for x in read_frames(seq.source, seq.src_type, seq.width, seq.height, seq.frames,
                                                         seq.yuv_matrix, seq.yuv_range))
    originals, frames = itertools.tee(sources)
    start = time.time()
    types, bits, psnrs, msssims = [], [], [], []
    for x, result in zip(originals, codec.evaluate(frames, i_rate=job.i_rate, p_rate=job.p_rate)):
        types.append(0 if result.intra else 1)
        bits.append(result.bits)
        psnrs.append(psnr(result.recon, x))
        msssims.append(msssim(result.recon, x))
    record = sequence_record(types, _floats(bits), _floats(psnrs),
                             [None] * len(msssims) if msssims[0] is None else _floats(msssims), seq.width * seq.height)
    record["test_time"] = time.time() - start
    return record


def _floats(values: List[torch.Tensor]) -> List[float]:
    """0-d tensors as floats, with one transfer to the host."""
    return torch.stack(values).tolist()
