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

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from .errors import SevcError
from .frames import COLOR_MATRICES, COLOR_RANGES, SOURCE_TYPES, SourceFrames, read_frames
from .intra import IntraNoAR
from .limits import LimitError, check_frame_count, check_frame_size
from .metrics import msssim, psnr, sequence_record
from .sevc_model import SEVC
from .video import VideoCodec


class ConfigError(SevcError):
    """A test configuration that does not follow the schema."""


@dataclass(frozen=True)
class Sequence:
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
    """One sequence at one rate."""

    sequence: Sequence
    rate_index: int
    q_in_ckpt: bool
    i_q_index: int
    p_q_index: int


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


def load_test_config(path: str | os.PathLike) -> List[Sequence]:
    """The sequences of the datasets marked `"test": 1` in a test configuration file."""
    try:
        config = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
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
            sequences.append(Sequence(dataset, name, _source(base, name, src_type), src_type, *values,
                                      yuv_matrix=matrix, yuv_range=color_range))
    if not sequences:
        raise ConfigError(f"{path}: no test class is marked \"test\": 1")
    return sequences


def evaluate_sequence(i_frame: IntraNoAR, p_frame: SEVC, job: Job, refresh_interval: int = 32) -> Dict[str, object]:
    """test.py's record of one job (see `sevc.metrics.sequence_record`), plus its `test_time` in seconds."""
    seq = job.sequence
    device = next(i_frame.parameters()).device
    codec = VideoCodec(i_frame, p_frame, intra_period=seq.gop, refresh_interval=refresh_interval)
    sources = SourceFrames(read_frames(seq.source, seq.src_type, seq.width, seq.height, seq.frames, seq.yuv_matrix,
                                       seq.yuv_range), device)
    start = time.time()
    types, bits, psnrs, msssims = [], [], [], []
    for result in codec.evaluate(sources, job.q_in_ckpt, job.i_q_index, job.p_q_index):
        types.append(0 if result.is_intra else 1)
        bits.append(result.bits)
        psnrs.append(psnr(result.recon, sources.current))
        msssims.append(msssim(result.recon, sources.current))
    record = sequence_record(types, bits, psnrs, msssims, seq.width * seq.height)
    record["test_time"] = time.time() - start
    return record
