"""Quantization of latents and the estimated bits of quantized latents.

At inference latents are rounded. In training (the modules in train mode) the decoder side gets
straight-through rounding, and the rates are estimated either on the latent plus uniform noise
(the smooth proxy of rounding, for training from fresh weights) or on the straight-through
rounded latent itself, as DCVC-DC's family quantizes in training: then the training-time rate is
the test path's estimate, the bits the stream pays.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

PROBABILITY_FLOOR = 1e-5


def quantize(x: torch.Tensor, training: bool = False) -> torch.Tensor:
    """Rounding of a latent for the decoder: plain at inference, straight-through in training
    (forward rounds, backward passes the gradient unchanged)."""
    if not training:
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


def rate_proxy(x: torch.Tensor, x_q: torch.Tensor, noisy: bool = False,
               mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """What the rate is estimated on: the rounded latent x_q (from `quantize`), or, if `noisy`, x
    plus uniform noise in [-0.5, 0.5) (only where `mask` is 1)."""
    if not noisy:
        return x_q
    noise = torch.empty_like(x).uniform_(-0.5, 0.5)
    return x + (noise if mask is None else noise * mask)


def estimated_bits(probs: torch.Tensor) -> torch.Tensor:
    """Estimated bits -log2(p) of symbols of probability p (p floored at 1e-5, bits at 0), elementwise."""
    bits = -1.0 * torch.log(probs + PROBABILITY_FLOOR) / math.log(2.0)
    return torch.clamp_min(bits, 0)
