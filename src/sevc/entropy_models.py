"""Entropy models: the factorized bit estimator (hyperprior latents), the Laplace and
Gaussian scale-table models (latents), and the rANS coder they drive.

Every model works in three modes: estimated bits from likelihoods (the test path), and
real encoding and decoding through the C++ rANS coder, with tables built once by
`update()` exactly as the published models build them (so streams are byte-identical).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _rans
from .errors import BitstreamError

PRECISION = 16
SYMBOL_LIMIT = 30000  # symbols are clamped to +-SYMBOL_LIMIT and coded as int16
_TAIL_SEARCH = range(50, 1, -1)


class EntropyCoder:
    """One rANS stream: an encoder (several parts, optional background thread) and a decoder."""

    def __init__(self, ec_thread: bool = False, stream_part: int = 1):
        self.encoder = _rans.RansEncoder(stream_part, ec_thread)
        self.decoder = _rans.RansDecoder()

    def reset(self) -> None:
        self.encoder.reset()

    def encode(self, symbols: torch.Tensor, indexes: torch.Tensor, tables: "_rans.CdfTables") -> None:
        """Queue symbols (any shape, integer-valued) coded with the tables `indexes` selects."""
        sym = symbols.reshape(-1).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).to(torch.int16).cpu().numpy()
        idx = indexes.reshape(-1).to(torch.int32).cpu().numpy()
        self.encoder.encode(sym, idx, tables)

    def flush(self) -> bytes:
        """Finish the stream and return it."""
        self.encoder.flush()
        return self.encoder.get_encoded_stream()

    def set_stream(self, stream: bytes) -> None:
        try:
            self.decoder.set_stream(bytes(stream))
        except ValueError as exc:
            raise BitstreamError(str(exc)) from None

    def decode(self, indexes: torch.Tensor, tables: "_rans.CdfTables") -> torch.Tensor:
        """Decode one symbol per index; returns a float32 tensor shaped like `indexes` (CPU)."""
        idx = indexes.reshape(-1).to(torch.int32).cpu().numpy()
        try:
            values = self.decoder.decode(idx, tables)
        except ValueError as exc:
            raise BitstreamError(str(exc)) from None
        return torch.from_numpy(values.astype(np.float32)).reshape(indexes.shape)

    def finish(self) -> None:
        """Check that the stream was decoded exactly to its end; call it after the last `decode`.

        Raises BitstreamError when bytes are left over (trailing data, or fewer symbols decoded
        than were coded) or the final rANS state is wrong (a corrupted stream).
        """
        try:
            self.decoder.finish()
        except ValueError as exc:
            raise BitstreamError(str(exc)) from None


def pmf_to_cdf_tables(pmf: torch.Tensor, tail_mass: torch.Tensor, pmf_length: torch.Tensor,
                      offset: torch.Tensor) -> "_rans.CdfTables":
    """Quantized CDF tables from per-row pmfs [n, L] (first pmf_length[i] used) and tail masses [n, 1].

    Each row codes pmf_length[i] values starting at offset[i], plus one escape symbol
    carrying the tail mass.
    """
    n = len(pmf_length)
    max_length = int(pmf_length.max())
    cdfs = np.zeros((n, max_length + 2), dtype=np.int32)
    for i in range(n):
        row = torch.cat((pmf[i, : pmf_length[i]], tail_mass[i]), dim=0)
        cdf = _rans.pmf_to_quantized_cdf(row.tolist(), PRECISION)
        cdfs[i, : len(cdf)] = cdf
    lengths = (pmf_length + 2).reshape(-1).int().cpu().numpy()
    return _rans.CdfTables(cdfs, lengths, offset.reshape(-1).int().cpu().numpy())


def bits_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """Estimated bits -log2(p) (p floored at 1e-5, bits at 0), elementwise."""
    bits = -1.0 * torch.log(probs + 1e-5) / math.log(2.0)
    return torch.clamp_min(bits, 0)


class Bitparm(nn.Module):
    """One layer of the factorized density: x * softplus(h) + b, then x + tanh(x) * tanh(a)."""

    def __init__(self, channel: int, final: bool = False):
        super().__init__()
        self.h = nn.Parameter(torch.nn.init.normal_(torch.empty(1, channel, 1, 1), 0, 0.01))
        self.b = nn.Parameter(torch.nn.init.normal_(torch.empty(1, channel, 1, 1), 0, 0.01))
        self.a = None if final else nn.Parameter(torch.nn.init.normal_(torch.empty(1, channel, 1, 1), 0, 0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * F.softplus(self.h) + self.b
        if self.a is None:
            return x
        return x + torch.tanh(x) * torch.tanh(self.a)


class BitEstimator(nn.Module):
    """Factorized (per-channel, non-parametric) density of hyperprior latents z [B, C, h, w]."""

    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel
        self.f1 = Bitparm(channel)
        self.f2 = Bitparm(channel)
        self.f3 = Bitparm(channel)
        self.f4 = Bitparm(channel, final=True)
        self.tables: Optional[_rans.CdfTables] = None

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Cumulative distribution of each channel at x [B, C, h, w]."""
        return torch.sigmoid(self.f4(self.f3(self.f2(self.f1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cdf(x)

    def bits(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Estimated bits of each element of the quantized latent z_hat."""
        return bits_from_probs(self.cdf(z_hat + 0.5) - self.cdf(z_hat - 0.5))

    def _tail(self, sign: float, reached) -> torch.Tensor:
        """Per channel, the smallest i in 2..50 where the CDF at sign * i satisfies `reached` (else 50)."""
        zero = torch.zeros(self.channel, device=self.f1.h.device)
        found = zero + 50
        for i in _TAIL_SEARCH:
            probs = torch.squeeze(self.cdf((zero + sign * i)[None, :, None, None]))
            found = torch.where(reached(probs, zero), zero + i, found)
        return found.int()

    @torch.no_grad()
    def update(self, force: bool = False) -> None:
        """Build the rANS tables (once, or again if `force`)."""
        if self.tables is not None and not force:
            return
        minima = self._tail(-1.0, lambda p, zero: p < zero + 0.0001)
        maxima = self._tail(1.0, lambda p, zero: p > zero + 0.9999)
        pmf_start = -minima
        pmf_length = maxima + minima + 1
        samples = torch.arange(int(pmf_length.max()), device=pmf_start.device)
        samples = samples[None, :] + pmf_start[:, None, None]
        lower = self.cdf(samples - 0.5).squeeze(0)
        upper = self.cdf(samples + 0.5).squeeze(0)
        pmf = (upper - lower)[:, 0, :]
        tail_mass = lower[:, 0, :1] + (1.0 - upper[:, 0, -1:])
        self.tables = pmf_to_cdf_tables(pmf, tail_mass, pmf_length, -minima)

    def _indexes(self, shape) -> torch.Tensor:
        n, c, h, w = shape
        return torch.arange(c, dtype=torch.int32).view(1, -1, 1, 1).repeat(n, 1, h, w)

    def encode(self, coder: EntropyCoder, z_hat: torch.Tensor) -> None:
        coder.encode(z_hat, self._indexes(z_hat.shape), self._require_tables())

    def decode(self, coder: EntropyCoder, size: Tuple[int, int], device: torch.device) -> torch.Tensor:
        """Decode z_hat [1, C, size[0], size[1]]."""
        indexes = self._indexes((1, self.channel, size[0], size[1]))
        return coder.decode(indexes, self._require_tables()).to(device)

    def _require_tables(self) -> "_rans.CdfTables":
        if self.tables is None:
            raise RuntimeError("call update() before entropy coding")
        return self.tables


class ScaleTableModel:
    """Zero-mean Laplace or Gaussian model of latent residuals, indexed by a table of 256 scales."""

    SCALE_LEVELS = 256
    SCALE_MAX = 64.0
    SCALE_MIN = {"laplace": 0.01, "gaussian": 0.11}

    def __init__(self, distribution: str = "laplace"):
        if distribution not in self.SCALE_MIN:
            raise ValueError(f"unknown distribution {distribution!r}")
        self.distribution = distribution
        self._dist = torch.distributions.Laplace if distribution == "laplace" else torch.distributions.Normal
        scale_min = self.SCALE_MIN[distribution]
        self.log_scale_min = math.log(scale_min)
        self.log_scale_step = (math.log(self.SCALE_MAX) - self.log_scale_min) / (self.SCALE_LEVELS - 1)
        self.scale_table = torch.exp(torch.linspace(self.log_scale_min, math.log(self.SCALE_MAX), self.SCALE_LEVELS))
        self.tables: Optional[_rans.CdfTables] = None

    def bits(self, y_q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Estimated bits of each integer residual y_q under the zero-mean model of `scales`."""
        scales = scales.clamp(1e-5, 1e10)
        dist = self._dist(torch.zeros_like(scales), scales)
        return bits_from_probs(dist.cdf(y_q + 0.5) - dist.cdf(y_q - 0.5))

    def update(self, force: bool = False) -> None:
        """Build the rANS tables (once, or again if `force`)."""
        if self.tables is not None and not force:
            return
        center = torch.zeros_like(self.scale_table) + 50
        dist = self._dist(torch.zeros_like(center), torch.zeros_like(center) + self.scale_table)
        for i in _TAIL_SEARCH:
            probs = torch.squeeze(dist.cdf(torch.zeros_like(center) + i))
            center = torch.where(probs > torch.zeros_like(center) + 0.9999, torch.zeros_like(center) + i, center)
        center = center.int()
        pmf_length = 2 * center + 1
        samples = (torch.arange(int(pmf_length.max())) - center[:, None]).float()
        scales = torch.zeros_like(samples) + self.scale_table[:, None]
        dist = self._dist(torch.zeros_like(scales), scales)
        upper = dist.cdf(samples + 0.5)
        lower = dist.cdf(samples - 0.5)
        self.tables = pmf_to_cdf_tables(upper - lower, 2 * lower[:, :1], pmf_length, -center)

    def indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """Table index (0..255) of each scale: the nearest table scale at or below it.

        Raises BitstreamError if a scale is NaN or infinite (what a corrupted stream decodes to).
        """
        if not bool(torch.isfinite(scales).all()):
            raise BitstreamError("corrupted bitstream: non-finite entropy-model scale (NaN or infinity)")
        scales = torch.maximum(scales, torch.zeros_like(scales) + 1e-5)
        indexes = (torch.log(scales) - self.log_scale_min) / self.log_scale_step
        return indexes.clamp_(0, self.SCALE_LEVELS - 1).int()

    def encode(self, coder: EntropyCoder, y_q: torch.Tensor, scales: torch.Tensor) -> None:
        coder.encode(y_q, self.indexes(scales), self._require_tables())

    def decode(self, coder: EntropyCoder, scales: torch.Tensor) -> torch.Tensor:
        """Decode integer residuals shaped like `scales`, on its device and dtype."""
        values = coder.decode(self.indexes(scales), self._require_tables())
        return values.to(device=scales.device, dtype=scales.dtype)

    def _require_tables(self) -> "_rans.CdfTables":
        if self.tables is None:
            raise RuntimeError("call update() before entropy coding")
        return self.tables
