"""The paper's rate-distortion objectives (Eq. 4 and Eq. 5) and their weights.

Distortion D is the MSE on RGB in [0, 1]; rates R are in bits per pixel of the frame the layer
codes. Each frame t of a training clip gets a hierarchical quality weight w_t = FRAME_WEIGHTS
[t % 4] (the I-frame, t = 0, is not part of the P-frame objectives), and the rate anchor a of
the batch the multiplier LAMBDAS[a]. Losses are averaged over the P-frames of the clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..psnr import psnr_of_mse

LAMBDAS = (50.0, 95.0, 200.0, 400.0)  # one per q anchor, lowest rate first
FRAME_WEIGHTS = (0.5, 1.2, 0.5, 0.9)  # w_t for t % 4 (DCVC-DC's hierarchical quality weights)
LAYER_WEIGHT = 0.05  # w_l of Eq. 5 (the paper's best, Table 6)


def mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(recon, target)


@dataclass
class FrameTerms:
    """What one coded P-frame contributes: distortion of the full-resolution frame (None when
    only the base layer runs), of the base layer, and the rates (bpp of the frame each layer codes)."""

    index: int
    distortion: Optional[torch.Tensor] = None
    base_distortion: Optional[torch.Tensor] = None
    rate: Optional[torch.Tensor] = None
    base_rate: Optional[torch.Tensor] = None


@dataclass
class Objective:
    """One of the paper's objectives; `kind`:

    - 'image': L = lambda * D + R (the I-frame codec);
    - 'base' (Eq. 4, first part): L = mean_t w_t * lambda * D_t^b + R_t^b;
    - 'augment' (Eq. 4, second part): L = mean_t w_t * lambda * D_t + R_t, the base layer frozen;
    - 'joint' (Eq. 5): L = mean_t w_t * lambda * (D_t + w_l * D_t^b) + R_t, R_t both layers' bits
      per full-resolution pixel.
    """

    kind: str
    lambdas: Sequence[float] = LAMBDAS
    frame_weights: Sequence[float] = FRAME_WEIGHTS
    layer_weight: float = LAYER_WEIGHT

    def frame_loss(self, terms: FrameTerms, anchor: int) -> torch.Tensor:
        lam = self.lambdas[anchor]
        weight = self.frame_weights[terms.index % len(self.frame_weights)]
        if self.kind == "image":
            return lam * terms.distortion + terms.rate
        if self.kind == "base":
            return weight * lam * terms.base_distortion + terms.base_rate
        if self.kind == "augment":
            return weight * lam * terms.distortion + terms.rate
        if self.kind == "joint":
            return weight * lam * (terms.distortion + self.layer_weight * terms.base_distortion) + terms.rate
        raise ValueError(f"unknown objective {self.kind!r}")

    def loss(self, frames: List[FrameTerms], anchor: int) -> torch.Tensor:
        return torch.stack([self.frame_loss(t, anchor) for t in frames]).mean()


def summarize(frames: List[FrameTerms]) -> Dict[str, float]:
    """Mean bpp and PSNR over the frames (of each layer that ran), for the training log."""
    out: Dict[str, float] = {}
    for name, rate, distortion in (("", "rate", "distortion"), ("base_", "base_rate", "base_distortion")):
        rates = [getattr(t, rate).item() for t in frames if getattr(t, rate) is not None]
        dists = [getattr(t, distortion).item() for t in frames if getattr(t, distortion) is not None]
        if rates:
            out[f"{name}bpp"] = sum(rates) / len(rates)
        if dists:
            out[f"{name}psnr"] = sum(psnr_of_mse(torch.tensor(max(d, 1e-10))).item() for d in dists) / len(dists)
    return out
