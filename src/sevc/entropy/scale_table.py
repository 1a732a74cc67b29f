"""The conditional entropy model of latent residuals: zero-mean Laplace or Gaussian distributions,
each residual coded with the table of the nearest of 256 log-spaced scales at or below its own."""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..numerics import Numerics, at_least_float32, functions, is_portable
from ..numerics.constants import log_spaced
from .bit_estimator import CDF_HIGH, TAIL_SEARCH
from .coder import CdfTables, EntropyCoder, TablesPerMode, pmf_to_cdf_tables
from .quantization import estimated_bits

SCALE_LEVELS = 256
SCALE_MAX = 64.0
SCALE_MIN = {"laplace": 0.01, "gaussian": 0.11}
DISTRIBUTIONS = {"laplace": torch.distributions.Laplace, "gaussian": torch.distributions.Normal}


class ScaleTableModel:
    """Zero-mean `distribution` ('laplace' or 'gaussian') of integer residuals, given their scales.

    Float mode builds its tables and indexes as the published models do (float32, libm). Portable
    mode uses the scales exp(log min + k step) computed in decimal arithmetic, CDFs from
    `sevc.numerics.functions`, and finds a scale's table by comparing it with the table scales.
    Tables are built for each mode when first needed.
    """

    def __init__(self, distribution: str = "laplace"):
        if distribution not in SCALE_MIN:
            raise ValueError(f"unknown distribution {distribution!r}")
        self.distribution = distribution
        self._dist = DISTRIBUTIONS[distribution]
        self.log_scale_min = math.log(SCALE_MIN[distribution])
        self.log_scale_step = (math.log(SCALE_MAX) - self.log_scale_min) / (SCALE_LEVELS - 1)
        self.scale_table = torch.exp(torch.linspace(self.log_scale_min, math.log(SCALE_MAX), SCALE_LEVELS))
        self.portable_scale_table = torch.tensor(log_spaced(SCALE_MIN[distribution], SCALE_MAX, SCALE_LEVELS),
                                                 dtype=torch.float64)
        self.tables = TablesPerMode(self._build_tables)

    def bits(self, y_q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Estimated bits of each integer residual y_q under the zero-mean model of `scales`
        (computed in float32 at least, whatever the precision the latents come in)."""
        y_q, scales = at_least_float32(y_q), at_least_float32(scales).clamp(1e-5, 1e10)
        dist = self._dist(torch.zeros_like(scales), scales, validate_args=False)  # NaN in, NaN bits out
        return estimated_bits(dist.cdf(y_q + 0.5) - dist.cdf(y_q - 0.5))

    def update(self, force: bool = False) -> None:
        """Build the float mode's rANS tables (once, or again if `force`, which also drops the
        other modes' tables)."""
        if force:
            self.tables.clear()
        self.tables(Numerics.FLOAT)

    def _cdf(self, x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """The distribution's CDF at x for `scales` (broadcast), in the current numerics mode."""
        if not is_portable():
            return self._dist(torch.zeros_like(scales), scales).cdf(x)
        if self.distribution == "gaussian":
            return functions.normal_cdf(x / scales)
        half_tail = 0.5 * functions.exp(-x.abs() / scales)
        return torch.where(x < 0, half_tail, 1.0 - half_tail)

    def _build_tables(self) -> CdfTables:
        """The tables of the current numerics mode (float mode: as the published models build them)."""
        table = self.portable_scale_table if is_portable() else self.scale_table
        center = torch.zeros_like(table) + 50
        scales = torch.zeros_like(center) + table
        for i in TAIL_SEARCH:
            probs = torch.squeeze(self._cdf(torch.zeros_like(center) + i, scales))
            center = torch.where(probs > torch.zeros_like(center) + CDF_HIGH, torch.zeros_like(center) + i, center)
        center = center.int()
        pmf_length = 2 * center + 1
        samples = (torch.arange(int(pmf_length.max())) - center[:, None]).to(table.dtype)
        scales = torch.zeros_like(samples) + table[:, None]
        upper = self._cdf(samples + 0.5, scales)
        lower = self._cdf(samples - 0.5, scales)
        return pmf_to_cdf_tables(upper - lower, 2 * lower[:, :1], pmf_length, -center)

    def indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """Table index (0..255, int32) of each scale: the nearest table scale at or below it; -1
        for a NaN or infinite scale (what a corrupted stream decodes to), which the coder refuses."""
        if is_portable():
            bounds = self.portable_scale_table[1:].to(scales.device)
            indexes = torch.bucketize(scales.to(torch.float64), bounds, right=True).to(scales.dtype)
        else:
            clamped = torch.maximum(scales, torch.zeros_like(scales) + 1e-5)
            indexes = ((torch.log(clamped) - self.log_scale_min) / self.log_scale_step).clamp_(0, SCALE_LEVELS - 1)
        return torch.where(torch.isfinite(scales), indexes, -1.0).int()

    def encode(self, coder: EntropyCoder, y_q: torch.Tensor, scales: torch.Tensor) -> None:
        """Queue integer residuals y_q, coded with the tables of `scales` (same shape)."""
        coder.encode(y_q, self.indexes(scales), self.tables())

    def decode(self, coder: EntropyCoder, scales: torch.Tensor) -> torch.Tensor:
        """Decode integer residuals shaped like `scales`, on its device and dtype."""
        values = coder.decode(self.indexes(scales), self.tables())
        return values.to(device=scales.device, dtype=scales.dtype)


@lru_cache(maxsize=None)
def scale_table_model(distribution: str) -> ScaleTableModel:
    """The one ScaleTableModel of `distribution`: its tables depend on nothing else, so every
    latent codec shares them."""
    return ScaleTableModel(distribution)
