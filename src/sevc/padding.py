"""Padding frames and latents to multiples of a block size, and cropping back.

Padding is always on the right and bottom, as in the published models.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def padded_size(height: int, width: int, multiple: int) -> Tuple[int, int]:
    """(height, width) rounded up to multiples of `multiple`."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def needs_padding(height: int, width: int, multiple: int) -> bool:
    return padded_size(height, width, multiple) != (height, width)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> torch.Tensor:
    """Pad x [B, C, H, W] on the right and bottom to multiples of `multiple` (mode: replicate or constant)."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple)
    if (ph, pw) == (h, w):
        return x
    return F.pad(x, (0, pw - w, 0, ph - h), mode=mode)


def crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The top-left height x width window of x [..., H, W]."""
    return x[..., :height, :width]


def downsampled_shape(height: int, width: int, factor: int) -> Tuple[int, int]:
    """Size of a map `factor` times smaller than a frame padded to multiples of `factor`."""
    return -(-height // factor), -(-width // factor)
