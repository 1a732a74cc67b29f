"""Rates: which quantization scales a codec uses.

A checkpoint holds per-rate scales for a few q anchors (4 for the official ones, the rates the
models were trained at). Besides the anchors, 64 fine levels are log-interpolated between the
first and the last anchor; encoder.py's `-q` picks one of those.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch

from ..numerics import Numerics, current, in_mode_dtype
from ..numerics.cache import TensorCache
from ..numerics.constants import log_spaced

FINE_LEVELS = 64


@dataclass(frozen=True)
class Rate:
    """One rate: checkpoint anchor `index` (`anchor=True`) or fine level `index` (0..63)."""

    index: int
    anchor: bool = False

    def __post_init__(self) -> None:
        try:
            index = operator.index(self.index)
        except TypeError:
            raise ValueError(f"a q index is an integer, not {self.index!r}") from None
        if index < 0 or (not self.anchor and index >= FINE_LEVELS):
            kind = "checkpoint q anchor" if self.anchor else "q index"
            limit = "" if self.anchor else f" 0..{FINE_LEVELS - 1}"
            raise ValueError(f"{kind} {index} is out of range{limit}")
        object.__setattr__(self, "index", index)

    @classmethod
    def level(cls, index: int) -> "Rate":
        """Fine level `index` (0: the first anchor's scale, 63: the last one's)."""
        return cls(index)

    @classmethod
    def of_anchor(cls, index: int) -> "Rate":
        """The checkpoint's q anchor `index`."""
        return cls(index, anchor=True)

    def __str__(self) -> str:
        return f"anchor {self.index}" if self.anchor else f"level {self.index}"

    def select(self, anchors: torch.Tensor) -> torch.Tensor:
        """This rate's scale (a 0-d tensor) from the per-anchor scales [anchors, 1, 1, 1]."""
        if not self.anchor:
            return fine_levels(anchors)[self.index]
        if self.index >= anchors.shape[0]:
            raise ValueError(f"checkpoint q anchor {self.index} is out of range 0..{anchors.shape[0] - 1}")
        return in_mode_dtype(anchors.reshape(-1)[self.index])


def fine_levels(anchors: torch.Tensor) -> torch.Tensor:
    """The 64 fine levels [64] log-interpolated between the first and the last of `anchors`.

    Float mode computes them in numpy float32 arithmetic, as the published models do (so that every
    coded symbol is bit-identical); portable mode in decimal arithmetic, in float64 (the same on
    every machine). Computed once per anchors tensor and mode, and again only when its values or
    storage change.
    """
    return _FINE_LEVELS(anchors, current())


def _fine_levels(anchors: torch.Tensor, mode: Numerics) -> torch.Tensor:
    values = anchors.detach().reshape(-1).cpu().numpy().astype(np.float32)
    if mode.portable:
        levels = torch.tensor(log_spaced(float(values[0]), float(values[-1]), FINE_LEVELS), dtype=torch.float64)
        levels = levels.to(mode.dtype)
    else:
        levels = np.exp(np.linspace(np.log(values[0]), np.log(values[-1]), FINE_LEVELS))
        levels = torch.from_numpy(np.asarray(levels, dtype=np.float32))
    return levels.to(anchors.device)


_FINE_LEVELS = TensorCache(_fine_levels)
