"""Exact sums: linear algebra whose result does not depend on the order a kernel adds in.

A float64 sum is exact, in any order and with or without fused multiply-adds, when every term
and every partial sum is an integer multiple of one power of two (a *grid*) and below 2 ** 53
grid steps. So every operand of a sum is first rounded to a grid:

- an activation (the input of a convolution, a linear layer or a matrix product) with
  ACTIVATION_BITS = 24 bits below the power of two above its largest magnitude, taken per sample
  (per leading index): n = round(x / g) with |n| <= 2 ** 24, on every machine the same g since
  the maximum and the exponent are exact;
- a weight, per output channel, on the grid that makes the sum of its magnitudes in grid steps
  at most 2 ** (52 - ACTIVATION_BITS) (found from an exact integer sum, so the same everywhere).

Then |sum_k n_k m_k| <= 2 ** 24 * sum_k |m_k| <= 2 ** 52 for every partial sum: the convolution
computed by any kernel gives the exact result — sevc's own direct float64 kernel on CPUs
(`sevc._exact`, AVX2 + FMA where the CPU has them), PyTorch's im2col + GEMM elsewhere, cuBLAS on
GPUs (cuDNN, which may use Winograd or FFT algorithms, is switched off). A bias is added
afterwards, once, with one rounding. The same bound makes softmax and layer-norm statistics exact.

On float64 CPU tensors, to_grid (over trailing dims), softmax and layer_norm's statistics also run
in `sevc._exact`'s C++ kernels, bit for bit the torch definitions (`_<name>_torch`) used elsewhere.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .. import _exact
from .cache import TensorCache
from .functions import _exp_torch, cpu_kernels, run_cpu_kernel, sqrt, two_pow

ACTIVATION_BITS = 24
SUM_BITS = 52        # partial sums stay below 2 ** 52 grid steps (float64 has 53)
_WEIGHT_PROBE_BITS = 24


def _to_grid_torch(x: torch.Tensor, bits: int, dims: Sequence[int]) -> torch.Tensor:
    """x (float64) rounded to multiples of 2 ** (e - bits), where 2 ** e is the power of two above
    the largest |x| over `dims` (one grid per index of the other dims)."""
    largest = x.abs().amax(dim=tuple(dims), keepdim=True)
    _, e = torch.frexp(largest)
    return torch.round(x * two_pow(bits - e)) * two_pow(e - bits)


def to_grid(x: torch.Tensor, bits: int, dims: Sequence[int]) -> torch.Tensor:
    """x (float64) rounded to multiples of 2 ** (e - bits), where 2 ** e is the power of two above
    the largest |x| over `dims` (one grid per index of the other dims); see _to_grid_torch."""
    n = x.dim()
    trailing = 0 < len(dims) <= n and sorted(d % n for d in dims) == list(range(n - len(dims), n))
    if cpu_kernels(x) and trailing and 1 <= bits <= SUM_BITS:
        return run_cpu_kernel(_exact.to_grid, x, bits, len(dims))
    return _to_grid_torch(x, bits, dims)


def _sample_dims(x: torch.Tensor) -> Tuple[int, ...]:
    return tuple(range(1, x.dim()))


def ceil_log2(count: int) -> int:
    return max(count - 1, 0).bit_length()


def weight_grid(weight: torch.Tensor, activation_bits: int = ACTIVATION_BITS) -> torch.Tensor:
    """A weight [out, ...] (any float dtype) as float64 on per-output-channel grids such that
    2 ** activation_bits * sum |w| / grid <= 2 ** 52 for each output channel."""
    w = weight.detach().to(torch.float64)
    rows = w.reshape(w.shape[0], -1)
    terms = rows.shape[1]
    _, e = torch.frexp(rows.abs().amax(dim=1, keepdim=True))
    probe = torch.round(rows * two_pow(_WEIGHT_PROBE_BITS - e))          # |probe| <= 2 ** 24: exact sums
    l1 = probe.abs().sum(dim=1, keepdim=True) + terms                      # exact, above sum |w| / probe grid
    _, l1_exponent = torch.frexp(l1)                                       # l1 < 2 ** l1_exponent
    shift = (SUM_BITS - activation_bits - 1) - l1_exponent                 # grid steps per probe step, as 2 ** shift
    grid = two_pow(e - _WEIGHT_PROBE_BITS - shift)
    return (torch.round(rows / grid) * grid).reshape(w.shape)


_WEIGHT_GRIDS = TensorCache(weight_grid)


def cached_weight_grid(weight: torch.Tensor) -> torch.Tensor:
    """weight_grid(weight), computed once per weight tensor (and again when it changes)."""
    return _WEIGHT_GRIDS(weight)


def _float64(bias: torch.Tensor) -> torch.Tensor:
    return bias.detach().to(torch.float64).contiguous()


_FLOAT64_BIASES = TensorCache(_float64)


def cached_float64_bias(bias: torch.Tensor) -> torch.Tensor:
    """bias as a contiguous float64 tensor (what the C++ kernels of portable and integer numerics
    add), computed once per bias tensor (and again when it changes)."""
    return _FLOAT64_BIASES(bias)


def _add_bias(y: torch.Tensor, bias: Optional[torch.Tensor], channel_dim: int) -> torch.Tensor:
    if bias is None:
        return y
    shape = [1] * y.dim()
    shape[channel_dim] = -1
    return y + bias.to(torch.float64).view(shape)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride, padding, dilation,
           groups: int) -> torch.Tensor:
    """F.conv2d computed exactly (see the module docstring) on x [N, C, H, W], in float64."""
    x = x.to(torch.float64)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if x.device.type == "cpu" and dilation == (1, 1) and stride[0] == stride[1] in (1, 2):
        output = _exact.conv2d(x.contiguous().numpy(), cached_weight_grid(weight).numpy(),
                               None if bias is None else cached_float64_bias(bias).numpy(), stride[0], padding, groups,
                               ACTIVATION_BITS, torch.get_num_threads())
        return torch.from_numpy(output)
    xq = to_grid(x, ACTIVATION_BITS, _sample_dims(x))
    with torch.backends.cudnn.flags(enabled=False):
        y = F.conv2d(xq, cached_weight_grid(weight).to(x.device), None, stride, padding, dilation, groups)
    return _add_bias(y, bias, 1)


def _pair(value) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """F.linear computed exactly on x [N, ..., in], in float64 (one grid per leading index)."""
    x = x.to(torch.float64)
    xq = to_grid(x, ACTIVATION_BITS, _sample_dims(x))
    return _add_bias(torch.matmul(xq, cached_weight_grid(weight).t()), bias, -1)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b computed exactly for float64 a [..., n, k], b [..., k, m]: both on grids per leading
    index, splitting the 52 bits between them after the log2(k) the sum needs."""
    bits = (SUM_BITS - ceil_log2(a.shape[-1])) // 2
    return torch.matmul(to_grid(a, bits, (-2, -1)), to_grid(b, bits, (-2, -1)))


def _softmax_torch(x: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim: e ** (x - max) on a grid fine enough for an exact sum, divided by it."""
    e = _exp_torch(x - x.amax(dim=-1, keepdim=True))                               # in (0, 1]
    step = two_pow(torch.full_like(e[..., :1], -(SUM_BITS - ceil_log2(x.shape[-1]))))
    e = torch.round(e / step) * step
    return e / e.sum(dim=-1, keepdim=True)


def _layer_norm_statistics_torch(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The exact statistics of layer_norm over x's last dim (float64): the deviation of x on its grid
    per row from its (exact) mean, and the variance, the exact mean of the squared deviations on
    their grid per row."""
    count = x.shape[-1]
    bits = SUM_BITS - ceil_log2(count)
    inverse = 1.0 / count
    xq = _to_grid_torch(x, bits, (-1,))
    deviation = xq - xq.sum(dim=-1, keepdim=True) * inverse
    variance = _to_grid_torch(deviation * deviation, bits, (-1,)).sum(dim=-1, keepdim=True) * inverse
    return deviation, variance


def _layer_norm_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer normalization over the last dim with exact statistics: x on a grid per row, its mean
    exact; the squared deviations on a grid per row, their mean exact."""
    deviation, variance = _layer_norm_statistics_torch(x.to(torch.float64))
    return _normalize(deviation, variance, weight, bias, eps)


def _normalize(deviation: torch.Tensor, variance: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               eps: float) -> torch.Tensor:
    normalized = deviation / sqrt(variance + eps)
    return normalized * weight.to(torch.float64) + bias.to(torch.float64)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim (see _softmax_torch): sevc._exact's kernel for float64 CPU tensors."""
    return run_cpu_kernel(_exact.softmax, x) if cpu_kernels(x) and x.dim() > 0 else _softmax_torch(x)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer normalization over the last dim with exact statistics (see _layer_norm_torch): the
    statistics by sevc._exact's kernel for float64 CPU tensors, the rest in torch (with a correctly
    rounded square root)."""
    x = x.to(torch.float64)
    if cpu_kernels(x) and x.dim() > 0:
        deviation, variance = run_cpu_kernel(_exact.layer_norm_statistics, x)
    else:
        deviation, variance = _layer_norm_statistics_torch(x)
    return _normalize(deviation, variance, weight, bias, eps)
