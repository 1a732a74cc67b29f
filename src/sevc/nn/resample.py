"""Resampling: bilinear x2 up/downsampling, backward warping by a flow, and the MATLAB-style
bicubic resize that makes the base-layer input.

Sampling positions and weights depend only on sizes, so they are built once per size, device and
dtype and cached. The float operations and their order are those of the published models, so
results are bit-identical in float32.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Tuple

import torch
import torch.nn.functional as F

_CACHED_SIZES = 32


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling of x [N, C, H, W] (half-pixel centres)."""
    return F.interpolate(x, (x.shape[2] * 2, x.shape[3] * 2), mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear /2 downsampling of x [N, C, H, W] (half-pixel centres)."""
    return F.interpolate(x, (x.shape[2] // 2, x.shape[3] // 2), mode="bilinear", align_corners=False)


@lru_cache(maxsize=_CACHED_SIZES)
def _identity_grid(n: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The sampling grid [N, 2, H, W] of the identity warp, in [-1, 1] (x then y)."""
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype).view(1, 1, 1, width).expand(n, -1, height, -1)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype).view(1, 1, height, 1).expand(n, -1, -1, width)
    return torch.cat([xs, ys], 1)


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp x [N, C, H, W] by flow [N, 2, H, W] (in pixels, x then y): bilinear, border
    padding, pixel centres at the corners of the [-1, 1] grid."""
    n, _, height, width = x.shape
    flow = torch.cat([flow[:, 0:1] / ((width - 1.0) / 2.0), flow[:, 1:2] / ((height - 1.0) / 2.0)], 1)
    grid = _identity_grid(n, height, width, flow.device, flow.dtype) + flow
    return F.grid_sample(x, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True)


def keys_cubic(distance: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.5) at `distance` (elementwise):
    1.5|d|^3 - 2.5|d|^2 + 1 for |d| <= 1, -0.5|d|^3 + 2.5|d|^2 - 4|d| + 2 for 1 < |d| <= 2, else 0."""
    d = distance.abs()
    d2 = d * d
    d3 = d * d2
    near = (1.5 * d3 - 2.5 * d2 + 1) * d.le(1).to(distance.dtype)
    far = (-0.5 * d3 + 2.5 * d2 - 4 * d + 2) * (d.gt(1) & d.le(2)).to(distance.dtype)
    return near + far


@lru_cache(maxsize=_CACHED_SIZES)
def _resize_plan(in_size: int, out_size: int, scale: float, device: torch.device,
                 dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """For resizing one axis from in_size to out_size samples: the source index of every tap
    [taps, out_size] (edges mirrored) and its weight [taps, out_size].

    Output sample j sits at input position (j + 0.5) / scale - 0.5; when downsampling the kernel
    is stretched by 1 / scale (antialiasing). Weights of one output sample sum to 1.
    """
    stretch = min(scale, 1.0)
    taps = math.ceil(4 / stretch) + 2
    centre = (torch.arange(out_size, dtype=torch.float32, device=device) + 0.5) / scale - 0.5
    first = centre.floor() - (taps // 2) + 1
    offsets = torch.arange(taps, dtype=torch.float32, device=device)[:, None]
    weights = keys_cubic(((centre - first)[None, :] - offsets) * stretch)
    weights = weights / weights.sum(dim=0, keepdim=True)
    source = first.long()[None, :] + offsets.long()
    source = torch.where(source < 0, -source - 1, source)                    # mirror: .. b a | a b ..
    source = torch.where(source >= in_size, 2 * in_size - source - 1, source)  # .. y z | z y ..
    return source, weights.to(dtype)


def _resize_axis(planes: torch.Tensor, out_size: int, scale: float, axis: int) -> torch.Tensor:
    """Resize planes [N, H, W] along axis 1 (height) or 2 (width)."""
    source, weights = _resize_plan(planes.shape[axis], out_size, scale, planes.device, planes.dtype)
    if axis == 1:
        return (planes[:, source, :] * weights[None, :, :, None]).sum(dim=1)
    samples = planes[:, :, source].permute(0, 2, 1, 3).contiguous()         # [N, taps, H, out]
    return (samples * weights[None, :, None, :]).sum(dim=1)


def imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB-style bicubic resize of images x [B, C, H, W] by `scale` (antialiased when
    shrinking): height first, then width; output ceil(H * scale) x ceil(W * scale), values not
    clamped, in x's floating dtype."""
    if x.dim() != 4:
        raise ValueError(f"imresize expects [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    planes = x.reshape(b * c, h, w)
    if out_h != h:
        planes = _resize_axis(planes, out_h, scale, 1)
    if out_w != w:
        planes = _resize_axis(planes, out_w, scale, 2)
    return planes.reshape(b, c, out_h, out_w)
