"""MATLAB-style bicubic resize (``imresize``), antialiased when downsampling.

This is how SEVC makes the base-layer input: the frame resized by 1/4. Each axis is
resized separately (height, then width) with the Keys cubic kernel (a = -0.5),
stretched by the scale when downsampling (antialiasing), over a symmetric
("edge pixels used twice") padding. Weights and the order of float operations follow
the resizer the published models were evaluated with, so outputs are bit-identical.
"""
from __future__ import annotations

import math

import torch

_CUBIC_A = -0.5


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5, evaluated elementwise."""
    a = _CUBIC_A
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax * ax2
    inner = ax.le(1).to(dtype=x.dtype)
    outer = torch.logical_and(ax.gt(1), ax.le(2)).to(dtype=x.dtype)
    near = ((a + 2) * ax3 - (a + 3) * ax2 + 1) * inner
    far = ((a * ax3) - (5 * a * ax2) + (8 * a * ax) - (4 * a)) * outer
    return near + far


def _taps(in_size: int, out_size: int, scale: float, device: torch.device):
    """First input row of each output sample, the kernel weights [K, out] and the padding."""
    support = 4
    stretch = 1.0
    if scale < 1:
        stretch = scale
        support = math.ceil(support / scale)
    taps = support + 2
    pos = torch.linspace(0, out_size - 1, steps=out_size, dtype=torch.float32, device=device)
    pos = (pos + 0.5) / scale - 0.5
    first = pos.floor() - (taps // 2) + 1
    dist = pos - first
    offsets = torch.arange(taps, dtype=torch.float32, device=device)[:, None]
    weights = _cubic((dist[None, :] - offsets) * stretch)
    weights /= weights.sum(dim=0, keepdim=True)
    first = first.long()
    pad_before = max(-int(first.min()), 0)
    pad_after = max(int(first.max()) + taps - in_size, 0)
    return first + pad_before, weights, pad_before, pad_after


def _symmetric_index(size: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source index of every row of a symmetric padding: [.., b, a | a, b, .. | y, z | z, y, ..]."""
    idx = torch.arange(-before, size + after, device=device)
    idx = torch.where(idx < 0, -idx - 1, idx)
    return torch.where(idx >= size, 2 * size - idx - 1, idx)


def _resize_axis(x: torch.Tensor, out_size: int, scale: float, axis: int) -> torch.Tensor:
    """Resize x [N, 1, H, W] along axis -2 (height) or -1 (width)."""
    if scale == 1:
        return x
    in_size = x.shape[axis]
    first, weights, before, after = _taps(in_size, out_size, scale, x.device)
    src = _symmetric_index(in_size, before, after, x.device)
    rows = src[first[None, :] + torch.arange(weights.shape[0], device=x.device)[:, None]]  # [K, out]
    plane = x[:, 0]
    if axis == -2:
        samples = plane[:, rows, :]                                   # [N, K, out, W]
        weights = weights.view(1, -1, out_size, 1)
    else:
        samples = plane[:, :, rows].permute(0, 2, 1, 3).contiguous()  # [N, K, H, out]
        weights = weights.view(1, -1, 1, out_size)
    return (samples * weights).sum(dim=1, keepdim=True)


def imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Bicubic resize of images x [B, C, H, W] by `scale` (output ceil(H*scale) x ceil(W*scale)).

    Values keep their range (no clamping); the output is float32.
    """
    if x.dim() != 4:
        raise ValueError(f"imresize expects [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    planes = x.reshape(-1, 1, h, w).float()
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    planes = _resize_axis(planes, out_h, scale, -2)
    planes = _resize_axis(planes, out_w, scale, -1)
    return planes.view(b, c, out_h, out_w)


def downsample(x: torch.Tensor, ratio: float = 4.0) -> torch.Tensor:
    """The base-layer input: x [B, 3, H, W] in [0, 1] resized by 1/ratio."""
    return imresize(x, 1.0 / ratio)
