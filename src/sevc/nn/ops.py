"""The operations of the models whose arithmetic depends on the numerics mode (`sevc.numerics`).

In float mode each is PyTorch's own operation, exactly as the published models call it. In
portable mode the linear ones are computed exactly (`sevc.numerics.exact`) and the nonlinear ones
from correctly rounded basic operations (`sevc.numerics.functions`); integer mode computes
convolutions and linear layers by exact integer sums (`sevc.numerics.integer`) and the rest as
portable mode does, rounded to float32. The modules are drop-in
subclasses of PyTorch's: same parameters, same state_dict keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..numerics import Numerics, current, exact, functions, in_mode_dtype, integer, is_portable


class Conv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = current()
        if mode is Numerics.INTEGER:
            return integer.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if mode is Numerics.PORTABLE:
            return exact.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return super().forward(x)


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = current()
        if mode is Numerics.INTEGER:
            return integer.linear(x, self.weight, self.bias)
        if mode is Numerics.PORTABLE:
            return exact.linear(x, self.weight, self.bias)
        return super().forward(x)


def _portable(function, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """A portable-mode operation (float64) on the last dim of x in the portable mode in effect: in
    integer mode on float32 x made float64, its result rounded back to float32."""
    if current() is Numerics.INTEGER:
        return integer.via_float64(function, x, **kwargs)
    return function(in_mode_dtype(x), **kwargs)


class LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_portable():
            return _portable(exact.layer_norm, x, weight=self.weight, bias=self.bias, eps=self.eps)
        return super().forward(x)


class GELU(nn.GELU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _portable(functions.gelu, x) if is_portable() else super().forward(x)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b."""
    mode = current()
    if mode is Numerics.INTEGER:
        return integer.matmul(a, b)
    return exact.matmul(in_mode_dtype(a), in_mode_dtype(b)) if mode is Numerics.PORTABLE else a @ b


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim."""
    mode = current()
    if mode is Numerics.INTEGER:
        return integer.softmax(x)
    return exact.softmax(in_mode_dtype(x)) if mode is Numerics.PORTABLE else torch.softmax(x, dim=-1)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return _portable(functions.sigmoid, x) if is_portable() else torch.sigmoid(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return _portable(functions.tanh, x) if is_portable() else torch.tanh(x)


def softplus(x: torch.Tensor) -> torch.Tensor:
    return _portable(functions.softplus, x) if is_portable() else F.softplus(x)
