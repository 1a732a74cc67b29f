"""The reference fixtures in tests/data/reference and the stand-in weights they were made with.

The fixtures are outputs of the published SEVC implementation run with deterministic,
untrained weights. This module rebuilds those weights from the fixture manifest (every
state_dict entry of the two official checkpoints, in order, with its shape) by the rule the
fixtures were generated with:

- each key has its own generator, numpy's PCG64 seeded with ``[seed, crc32(key)]``;
- quantization parameters are constants: ``q_basic_enc`` 2.0, ``q_basic_dec`` 0.5, and the four
  per-rate scales ``q_scale_enc`` (0.6, 0.9, 1.3, 1.9) and ``q_scale_dec`` (1.7, 1.1, 0.8, 0.5);
- Swin relative position bias tables: normal with standard deviation 0.02;
- the factorized bit estimators' ``h``, ``b``, ``a``: normal with standard deviation 0.01;
- weights of two or more dimensions: uniform in +-1 / sqrt(fan_in);
- one-dimensional weights (norm scales): 1 + uniform in +-0.1;
- everything else (biases): uniform in +-0.3;
- buffers (the Swin ``relative_position_index``) are not drawn: the model computes them.

All values are float32. The tests load them with ``strict=True``, which alone proves the
checkpoint layout; the fixtures then prove the numbers.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
FIXTURES = REFERENCE
CASES = ("case_a", "case_b", "case_c")

_FILLED = {"q_basic_enc": 2.0, "q_basic_dec": 0.5}
_PER_RATE = {"q_scale_enc": (0.6, 0.9, 1.3, 1.9), "q_scale_dec": (1.7, 1.1, 0.8, 0.5)}
_BIAS_RANGE = 0.3


def manifest(which: str) -> List[Tuple[str, List[int], str]]:
    """Entries (key, shape, 'param' | 'buffer') of the official 'i_frame' or 'p_frame' checkpoint."""
    return [tuple(entry) for entry in json.loads((REFERENCE / "manifest.json").read_text())[which]]


def stand_in_tensor(key: str, shape, seed: int) -> np.ndarray:
    """The stand-in value of one checkpoint parameter (float32)."""
    leaf = key.rsplit(".", 1)[-1]
    for name, value in _FILLED.items():
        if name in leaf:
            return np.full(shape, value, np.float32)
    for name, values in _PER_RATE.items():
        if name in leaf:
            return np.asarray(values, np.float32).reshape(shape)
    rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(key.encode())]))
    if leaf == "relative_position_bias_table":
        values = 0.02 * rng.standard_normal(shape)
    elif leaf in ("h", "b", "a"):
        values = 0.01 * rng.standard_normal(shape)
    elif leaf == "weight" and len(shape) >= 2:
        values = rng.uniform(-1.0, 1.0, shape) / np.sqrt(np.prod(shape[1:]))
    elif leaf == "weight":
        values = 1.0 + 0.1 * rng.uniform(-1.0, 1.0, shape)
    else:
        values = _BIAS_RANGE * rng.uniform(-1.0, 1.0, shape)
    return values.astype(np.float32)


def stand_in_parameters(which: str, seed: int) -> Dict[str, torch.Tensor]:
    """Every parameter of the checkpoint `which` ('i_frame' or 'p_frame'), as the fixtures used them."""
    return {key: torch.from_numpy(stand_in_tensor(key, tuple(shape), seed))
            for key, shape, kind in manifest(which) if kind == "param"}


def stand_in_checkpoint(which: str, seed: int, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A full state_dict, as an official checkpoint file holds it: the parameters plus the
    buffers, taken from `model` (a freshly built model of the right kind)."""
    state = stand_in_parameters(which, seed)
    buffers = dict(model.named_buffers())
    for key, _, kind in manifest(which):
        if kind == "buffer":
            state[key] = buffers[key].clone()
    return {key: state[key] for key, _, _ in manifest(which)}


def case_info(case: str) -> dict:
    return json.loads((FIXTURES / case / "case.json").read_text())


def path_rate(info: dict):
    """The rate of a case's test path (a checkpoint anchor or a fine level)."""
    from sevc.models.rate import Rate

    return Rate(info["test_q_index"], anchor=info["test_q_in_ckpt"])


def codec_rate(info: dict):
    """The rate of a case's codec path (a fine level)."""
    from sevc.models.rate import Rate

    return Rate.level(info["q_index"])


class ModuleRecords:
    """The recorded inputs and outputs of case_a's modules (`case_a/modules.npz`).

    Keys are ``"<model>.<module path>@f<frame>/<in|out><k>[.<j>]"``. Arrays recorded more than
    once are stored once; `modules_aliases.json` maps the other keys to the stored one.
    """

    def __init__(self, case: str = "case_a"):
        self._arrays = np.load(FIXTURES / case / "modules.npz")
        self._aliases = json.loads((FIXTURES / case / "modules_aliases.json").read_text())
        self.keys = sorted(set(self._arrays.files) | set(self._aliases))

    def __contains__(self, key: str) -> bool:
        return key in self._aliases or key in self._arrays.files

    def __getitem__(self, key: str) -> np.ndarray:
        return self._arrays[self._aliases.get(key, key)]
