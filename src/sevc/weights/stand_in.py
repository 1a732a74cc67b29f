"""Stand-in weights: untrained models with deterministic weights, to run every tool without the
official checkpoints (the pictures are noise, every rate has its own bits).

The values are the same on every machine: each parameter is drawn from a counter-based integer
hash (SplitMix64 of the seed, the parameter's name and the element's index), turned into a
uniform number with exact float64 operations and one IEEE multiplication, then rounded to
float32. (PyTorch's own initialisation is not: its float kernels differ between CPU capabilities,
so a stream encoded on one machine would name other weights on another.)

Distributions follow PyTorch's defaults: convolution and linear weights and biases uniform in
+-1/sqrt(fan_in), Swin relative position biases with standard deviation 0.02, the factorized
bit estimators' parameters with 0.01, constants (norms, q_basic) as initialised; the per-anchor q
scales are spread like trained ones (`STAND_IN_Q_SCALES`).
"""
from __future__ import annotations

import math
import zlib
from typing import Optional

import numpy as np
import torch
from torch import nn

from .checkpoint import named_parameters
from ..models.intra import IntraNoAR
from .models import Models, ready
from ..models.sevc import SEVC

# Per-anchor scales, spread like trained ones: higher anchors scale the latents up before
# rounding (enc) and back down after (dec), so every rate codes at its own bits.
STAND_IN_Q_SCALES = {"q_scale_enc": (0.6, 0.9, 1.3, 1.9), "q_scale_dec": (1.7, 1.1, 0.8, 0.5)}
STAND_IN_ANCHORS = len(STAND_IN_Q_SCALES["q_scale_enc"])
_STANDARD_DEVIATIONS = {"relative_position_bias_table": 0.02, "h": 0.01, "b": 0.01, "a": 0.01}
_UNIFORM_BITS = 24
_MASK = (1 << 64) - 1


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function of uint64 counters (wrapping arithmetic)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, name: str, shape: torch.Size, bound: float) -> torch.Tensor:
    """float32 values in (-bound, bound), the same on every machine for (seed, name)."""
    key = ((seed & 0xFFFFFFFF) << 32) | zlib.crc32(name.encode())
    start = _splitmix64(np.array([key & _MASK], dtype=np.uint64))
    bits = _splitmix64(start + np.arange(math.prod(shape), dtype=np.uint64)) >> np.uint64(64 - _UNIFORM_BITS)
    unit = (2.0 * bits.astype(np.float64) + 1.0 - 2.0 ** _UNIFORM_BITS) * 2.0 ** -_UNIFORM_BITS   # exact, in (-1, 1)
    return torch.from_numpy(unit * bound).to(torch.float32).reshape(shape)


def _bound(module: nn.Module, leaf: str, parameter: torch.Tensor) -> Optional[float]:
    """The half-width of the uniform draw of one parameter; None: keep its (constant) value."""
    if leaf in _STANDARD_DEVIATIONS:
        return _STANDARD_DEVIATIONS[leaf] * math.sqrt(3.0)
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2 and leaf in ("weight", "bias"):
        return 1.0 / math.sqrt(math.prod(weight.shape[1:]))
    return None


def _draw(model: nn.Module, seed: int) -> None:
    """Draw every parameter of `model`, each from its checkpoint name."""
    owners = {id(parameter): (module, leaf) for module in model.modules()
              for leaf, parameter in module.named_parameters(recurse=False)}
    for name, parameter in named_parameters(model).items():
        scales = next((v for suffix, v in STAND_IN_Q_SCALES.items() if name.endswith(suffix)), None)
        if scales is not None:
            parameter.copy_(torch.tensor(scales).reshape(parameter.shape))
            continue
        bound = _bound(*owners[id(parameter)], parameter)
        if bound is not None:
            parameter.copy_(uniform(seed, name, parameter.shape, bound))


def stand_in_models(seed: int = 0, device: str | torch.device = "cpu", ec_thread: bool = False,
                    stream_part_i: int = 1, stream_part_p: int = 1) -> Models:
    """The two models with the stand-in weights of `seed`, in eval mode on `device`, entropy
    coders built (see the module docstring)."""
    models = (IntraNoAR(anchor_num=STAND_IN_ANCHORS, ec_thread=ec_thread, stream_part=stream_part_i),
              SEVC(anchor_num=STAND_IN_ANCHORS, ec_thread=ec_thread, stream_part=stream_part_p))
    with torch.no_grad():
        for model in models:
            _draw(model, seed)
    return Models(*(ready(model, device) for model in models))
