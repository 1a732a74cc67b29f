"""Resampling: bilinear x2 up/downsampling, 2x2 average pooling, backward warping by a flow, and
the MATLAB-style bicubic resize that makes the base-layer input.

Sampling positions and weights depend only on sizes, so they are built once per size, device and
dtype and cached. In float mode the operations and their order are those of the published models
(bit-identical in float32). In portable mode (`sevc.numerics`) every result is an explicit
weighted sum of its few source samples, evaluated term by term in a fixed order, so it is the
same on every machine.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Tuple

import torch
import torch.nn.functional as F

from .. import _exact
from ..numerics import is_portable

_CACHED_SIZES = 32


def _upsample_axis(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Bilinear x2 along `axis` (half-pixel centres, edges repeated): new sample 2i is
    0.25 x[i-1] + 0.75 x[i], sample 2i+1 is 0.75 x[i] + 0.25 x[i+1] (each product rounded, then
    the sum), written in place into the result."""
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = 2 * n
    out = x.new_empty(shape)
    even, odd = out.unflatten(axis, (n, 2)).unbind(axis + 1)
    torch.mul(x.narrow(axis, 0, n - 1), 0.25, out=even.narrow(axis, 1, n - 1))   # 0.25 x[i-1]
    torch.mul(x.narrow(axis, 0, 1), 0.25, out=even.narrow(axis, 0, 1))
    torch.mul(x.narrow(axis, 1, n - 1), 0.25, out=odd.narrow(axis, 0, n - 1))    # 0.25 x[i+1]
    torch.mul(x.narrow(axis, n - 1, 1), 0.25, out=odd.narrow(axis, n - 1, 1))
    three_quarters = 0.75 * x
    even.add_(three_quarters)
    odd.add_(three_quarters)
    return out


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling of x [N, C, H, W] (half-pixel centres)."""
    if is_portable():
        return _upsample_axis(_upsample_axis(x, 2), 3)
    return F.interpolate(x, (x.shape[2] * 2, x.shape[3] * 2), mode="bilinear", align_corners=False)


def average_pool2x(x: torch.Tensor) -> torch.Tensor:
    """The mean of every 2x2 block of x [N, C, H, W] (H, W even)."""
    if is_portable():
        return ((x[..., 0::2, 0::2] + x[..., 0::2, 1::2]) + (x[..., 1::2, 0::2] + x[..., 1::2, 1::2])) * 0.25
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear /2 downsampling of x [N, C, H, W] (half-pixel centres; H, W even in portable mode,
    where it is the 2x2 mean it equals)."""
    if is_portable():
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"portable downsampling needs an even size, got {tuple(x.shape[2:])}")
        return average_pool2x(x)
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
    if is_portable():
        return _portable_warp(x, flow)
    n, _, height, width = x.shape
    flow = torch.cat([flow[:, 0:1] / ((width - 1.0) / 2.0), flow[:, 1:2] / ((height - 1.0) / 2.0)], 1)
    grid = _identity_grid(n, height, width, flow.device, flow.dtype) + flow
    return F.grid_sample(x, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True)


def _portable_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """_warp_torch, on float32 CPU tensors by sevc._exact's kernel (the same operations)."""
    if x.dtype == flow.dtype == torch.float32 and x.device.type == flow.device.type == "cpu":
        out = _exact.integer_warp(x.contiguous().numpy(), flow.contiguous().numpy(), torch.get_num_threads())
        return torch.from_numpy(out)
    return _warp_torch(x, flow)


def _warp_torch(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """flow_warp as explicit bilinear interpolation: each sample of x at (i + flow_y, j + flow_x),
    clamped into the frame, from its 4 neighbours, weighted and summed in a fixed order."""
    n, c, height, width = x.shape
    cols = torch.arange(width, dtype=x.dtype, device=x.device).view(1, 1, width)
    rows = torch.arange(height, dtype=x.dtype, device=x.device).view(1, height, 1)
    px = torch.nan_to_num(cols + flow[:, 0]).clamp(0, width - 1)   # a corrupted stream's NaN stays inside
    py = torch.nan_to_num(rows + flow[:, 1]).clamp(0, height - 1)
    x0, y0 = px.floor(), py.floor()
    fx, fy = (px - x0)[:, None], (py - y0)[:, None]
    x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
    flat = x.reshape(n, c, height * width)

    def sample(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        index = (ys.long() * width + xs.long()).view(n, 1, -1).expand(n, c, -1)
        return flat.gather(2, index).view(n, c, height, width)

    top = sample(y0, x0) * (1.0 - fx) + sample(y0, x1) * fx
    bottom = sample(y1, x0) * (1.0 - fx) + sample(y1, x1) * fx
    return top * (1.0 - fy) + bottom * fy


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
def _resize_plan(in_size: int, out_size: int, scale: float, device: torch.device, dtype: torch.dtype,
                 portable: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """For resizing one axis from in_size to out_size samples: the source index of every tap
    [taps, out_size] (edges mirrored) and its weight [taps, out_size].

    Output sample j sits at input position (j + 0.5) / scale - 0.5; when downsampling the kernel
    is stretched by 1 / scale (antialiasing). Weights of one output sample sum to 1. Float mode
    computes them in float32 as published; portable mode in float64, with the scale a power of
    two's reciprocal and the normalizing sum taken tap by tap.
    """
    stretch = min(scale, 1.0)
    taps = math.ceil(4 / stretch) + 2
    work = torch.float64 if portable else torch.float32
    centre = (torch.arange(out_size, dtype=work, device=device) + 0.5) / scale - 0.5
    first = centre.floor() - (taps // 2) + 1
    offsets = torch.arange(taps, dtype=work, device=device)[:, None]
    weights = keys_cubic(((centre - first)[None, :] - offsets) * stretch)
    total = _tap_sum(list(weights)) if portable else weights.sum(dim=0, keepdim=True)
    weights = weights / total
    source = first.long()[None, :] + offsets.long()
    source = torch.where(source < 0, -source - 1, source)                    # mirror: .. b a | a b ..
    source = torch.where(source >= in_size, 2 * in_size - source - 1, source)  # .. y z | z y ..
    return source, weights.to(dtype)


def _tap_sum(terms) -> torch.Tensor:
    """The sum of `terms`, added one by one in order (the same on every machine)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _resize_axis(planes: torch.Tensor, out_size: int, scale: float, axis: int) -> torch.Tensor:
    """Resize planes [N, H, W] along axis 1 (height) or 2 (width)."""
    portable = is_portable()
    source, weights = _resize_plan(planes.shape[axis], out_size, scale, planes.device, planes.dtype, portable)
    if axis == 1:
        samples, weights = planes[:, source, :], weights[None, :, :, None]                   # [N, taps, out, W]
    else:
        samples, weights = planes[:, :, source].permute(0, 2, 1, 3).contiguous(), weights[None, :, None, :]
    if portable:
        return _tap_sum([samples[:, k] * weights[:, k] for k in range(samples.shape[1])])
    return (samples * weights).sum(dim=1)


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
