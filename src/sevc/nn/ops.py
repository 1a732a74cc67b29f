"""The operations of the models whose arithmetic depends on the numerics mode (`sevc.numerics`).

In float mode each is PyTorch's own operation, exactly as the published models call it. In
portable mode the linear ones are computed exactly (`sevc.numerics.exact`) and the nonlinear ones
from correctly rounded basic operations (`sevc.numerics.functions`). The modules are drop-in
subclasses of PyTorch's: same parameters, same state_dict keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..numerics import exact, functions, in_mode_dtype, is_portable


class Conv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_portable():
            return exact.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return super().forward(x)


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_portable():
            return exact.linear(x, self.weight, self.bias)
        return super().forward(x)


class LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_portable():
            return exact.layer_norm(x, self.weight, self.bias, self.eps)
        return super().forward(x)


class GELU(nn.GELU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functions.gelu(in_mode_dtype(x)) if is_portable() else super().forward(x)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b."""
    return exact.matmul(in_mode_dtype(a), in_mode_dtype(b)) if is_portable() else a @ b


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim."""
    return exact.softmax(in_mode_dtype(x)) if is_portable() else torch.softmax(x, dim=-1)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return functions.sigmoid(in_mode_dtype(x)) if is_portable() else torch.sigmoid(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return functions.tanh(in_mode_dtype(x)) if is_portable() else torch.tanh(x)


def softplus(x: torch.Tensor) -> torch.Tensor:
    return functions.softplus(in_mode_dtype(x)) if is_portable() else F.softplus(x)
