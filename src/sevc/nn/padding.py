"""Padding frames and latents to multiples of a block size, cropping back, and the strides.

Padding is on the right and bottom, as in the published models.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

FRAME_MULTIPLE = 16  # frames are coded padded to multiples of 16 (base-layer frames too)
LATENT_STRIDE = 16   # latents y are at 1/16 of the coded frame
HYPER_STRIDE = 64    # hyperprior latents z are at 1/64
HYPER_INPUT_MULTIPLE = 4  # a hyperprior encoder sees its latent padded to multiples of 4


def padded_size(height: int, width: int, multiple: int) -> Tuple[int, int]:
    """(height, width) rounded up to multiples of `multiple`."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


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


def strided_size(height: int, width: int, stride: int) -> Tuple[int, int]:
    """Size of a map `stride` times smaller than a frame padded to multiples of `stride`."""
    return -(-height // stride), -(-width // stride)
