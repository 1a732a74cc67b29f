"""Decoded picture buffers: what each layer keeps of the frames it has coded, to code the next one.

Buffers are immutable: coding a frame returns a new buffer. `refreshed()` drops the propagated
feature (the published feature reset every `refresh_interval` frames).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch

LATENT_QUEUE = 3  # the enhancement latents the latent prior looks back on


@dataclass(frozen=True)
class BaseBuffer:
    """The base layer's references, at its coded size h x w (the 4x-downsampled frame padded to
    multiples of 16).

    frame [B, 3, h, w]: the last reconstruction; feature [B, 48, h, w]: the propagated feature
    (None after an I-frame or a refresh); mv_feature [B, 64, h/4, w/4], y [B, 128, h/16, w/16],
    mv_y [B, 64, h/16, w/16]: the last motion feature and latents; mv [B, 2, h, w]: the last
    decoded motion (all None after an I-frame).
    """

    frame: torch.Tensor
    feature: Optional[torch.Tensor] = None
    mv_feature: Optional[torch.Tensor] = None
    y: Optional[torch.Tensor] = None
    mv_y: Optional[torch.Tensor] = None
    mv: Optional[torch.Tensor] = None

    def refreshed(self) -> "BaseBuffer":
        return replace(self, feature=None)


@dataclass(frozen=True)
class EnhancementBuffer:
    """The enhancement layer's references, at its coded size H x W (the frame padded to multiples
    of 16): frame [B, 3, H, W]; feature [B, 48, H, W] (None after an I-frame or a refresh);
    latents: the queue of the 3 latest latents [B, 128, H/16, W/16], oldest first, None while empty."""

    frame: torch.Tensor
    feature: Optional[torch.Tensor] = None
    latents: Tuple[Optional[torch.Tensor], ...] = (None,) * LATENT_QUEUE

    def refreshed(self) -> "EnhancementBuffer":
        return replace(self, feature=None)

    def queued(self, y_hat: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        """The latent queue after adding y_hat (the oldest latent leaves)."""
        return (*self.latents[1:], y_hat)

    @property
    def queue_fill(self) -> int:
        """How many latents the queue holds."""
        return sum(y is not None for y in self.latents)


@dataclass(frozen=True)
class Buffers:
    """Both layers' buffers; `enhancement` is None when only the base layer is coded (fast-mode
    streams and skim decoding)."""

    base: BaseBuffer
    enhancement: Optional[EnhancementBuffer]

    def refreshed(self) -> "Buffers":
        return Buffers(self.base.refreshed(), self.enhancement.refreshed() if self.enhancement else None)
