"""The factorized entropy model of hyperprior latents (DCVC-DC's bit estimator): a learned,
per-channel, non-parametric cumulative distribution."""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import torch
from torch import nn

from ..nn.ops import sigmoid, softplus, tanh
from ..numerics import Numerics, current
from .coder import CdfTables, EntropyCoder, TablesPerMode, pmf_to_cdf_tables
from .quantization import estimated_bits

TAIL_SEARCH = range(50, 1, -1)  # table ranges are searched from +-50 inwards
CDF_LOW, CDF_HIGH = 0.0001, 0.9999  # a table spans the values whose CDF lies between these


class Bitparm(nn.Module):
    """One layer of the factorized density: x * softplus(h) + b, then x + tanh(x) * tanh(a)."""

    def __init__(self, channel: int, final: bool = False):
        super().__init__()
        self.h = nn.Parameter(torch.nn.init.normal_(torch.empty(1, channel, 1, 1), 0, 0.01))
        self.b = nn.Parameter(torch.nn.init.normal_(torch.empty(1, channel, 1, 1), 0, 0.01))
        self.a = None if final else nn.Parameter(torch.nn.init.normal_(torch.empty(1, channel, 1, 1), 0, 0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * softplus(self.h) + self.b
        if self.a is None:
            return x
        return x + tanh(x) * tanh(self.a)


@lru_cache(maxsize=16)
def _channel_indexes(batch: int, channel: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """The table index (the channel) of every element of a [B, C, h, w] latent, int32."""
    return torch.arange(channel, dtype=torch.int32, device=device).view(1, -1, 1, 1).repeat(batch, 1, height, width)


class BitEstimator(nn.Module):
    """Factorized density of hyperprior latents z [B, C, h, w]: one CDF per channel, four Bitparm
    layers then a sigmoid. Its rANS tables hold one table per channel, built for each numerics
    mode when first needed (`update` builds the float ones)."""

    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel
        self.f1 = Bitparm(channel)
        self.f2 = Bitparm(channel)
        self.f3 = Bitparm(channel)
        self.f4 = Bitparm(channel, final=True)
        self.tables = TablesPerMode(self._build_tables)

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Cumulative distribution of each channel at x [B, C, h, w]."""
        return sigmoid(self.f4(self.f3(self.f2(self.f1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cdf(x)

    def bits(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Estimated bits of each element of the quantized latent z_hat (in the parameters' precision)."""
        z_hat = z_hat.to(self.f1.h.dtype)
        return estimated_bits(self.cdf(z_hat + 0.5) - self.cdf(z_hat - 0.5))

    def _tail(self, sign: float, reached) -> torch.Tensor:
        """Per channel, the smallest i in 2..50 where the CDF at sign * i satisfies `reached` (else 50)."""
        zero = torch.zeros(self.channel, device=self.f1.h.device, dtype=current().dtype)
        found = zero + 50
        for i in TAIL_SEARCH:
            probs = torch.squeeze(self.cdf((zero + sign * i)[None, :, None, None]))
            found = torch.where(reached(probs, zero), zero + i, found)
        return found.int()

    def update(self, force: bool = False) -> None:
        """Build the float mode's rANS tables (once, or again if `force`, which also drops the
        other modes' tables)."""
        if force:
            self.tables.clear()
        self.tables(Numerics.FLOAT)

    @torch.no_grad()
    def _build_tables(self) -> CdfTables:
        """The tables of the current numerics mode, as the published models build them."""
        minima = self._tail(-1.0, lambda p, zero: p < zero + CDF_LOW)
        maxima = self._tail(1.0, lambda p, zero: p > zero + CDF_HIGH)
        pmf_start = -minima
        pmf_length = maxima + minima + 1
        samples = torch.arange(int(pmf_length.max()), device=pmf_start.device, dtype=current().dtype)
        samples = samples[None, :] + pmf_start[:, None, None]
        lower = self.cdf(samples - 0.5).squeeze(0)
        upper = self.cdf(samples + 0.5).squeeze(0)
        pmf = (upper - lower)[:, 0, :]
        tail_mass = lower[:, 0, :1] + (1.0 - upper[:, 0, -1:])
        return pmf_to_cdf_tables(pmf, tail_mass, pmf_length, -minima)

    def encode(self, coder: EntropyCoder, z_hat: torch.Tensor) -> None:
        """Queue the quantized latent z_hat [B, C, h, w]."""
        coder.encode(z_hat, _channel_indexes(*z_hat.shape, z_hat.device), self.tables())

    def decode(self, coder: EntropyCoder, size: Tuple[int, int], device: torch.device) -> torch.Tensor:
        """Decode z_hat [1, C, size[0], size[1]] onto `device`."""
        indexes = _channel_indexes(1, self.channel, size[0], size[1], torch.device("cpu"))
        return coder.decode(indexes, self.tables()).to(device)

