"""Integer numerics: the sums of convolutions and linear layers as exact integer sums.

Integer mode (`Numerics.INTEGER`) keeps activations in float32 and computes every convolution
and linear layer as a sum of integer products, exact, so that any kernel on any machine gives
the same bits:

- the input of a layer, per sample, becomes 16-bit integers on the grid of 2 ** (e - 15), where
  2 ** e is the power of two above the sample's largest magnitude (frexp's exponent, exact, 0
  for an all-zero or non-finite sample): a = clamp(round_half_even(x * 2 ** (15 - e)), -32768,
  32767) (NaN counts as 0);
- each output channel of a weight becomes integers on the grid of 2 ** (e_o - 15), e_o the
  smallest exponent with |round(w * 2 ** (15 - e_o))| <= WEIGHT_LIMIT (32639 = 127 * 256 + 127,
  so that every weight splits into two signed bytes; computed once per weight);
- y = float32(float64(S) * 2 ** (e - 15 + e_o - 15) + float64(bias)), S = sum a * q exactly
  (|S| < 2 ** 53, so float64(S) is S), one float64 rounding, then one to float32.

What computes S is free, as long as it is exact: sevc's C++ kernels on CPUs (`sevc._exact`:
int16 multiply-adds with int32 accumulators widened before they can overflow, AVX-512 VNNI,
AVX2 or plain C++ by run-time dispatch, and AMX tiles where the CPU has them), int8 matrix
products (`torch._int_mm`, the integer units of GPUs) of the byte slices of a and q elsewhere,
and float32 convolutions of byte slices (exact below 2 ** 24) for grouped and depthwise layers
on GPUs. `reference_conv2d` is the definition in a few lines of torch.

The Swin attention's products are integer sums too (`matmul`: each matrix on its own grid), and
its softmax a float32 one whose sums are exact (`softmax`). The rest of the arithmetic of integer
mode is that of portable mode (`sevc.numerics`) on float32 tensors: elementwise operations are
IEEE operations, resampling and warping explicit formulas in a fixed order; layer norms and the
elementwise functions (GELU, sigmoid, tanh, softplus) go through portable mode's float64
definitions, their results rounded to float32.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .. import _exact
from .cache import TensorCache
from .exact import _pair, cached_float64_bias
from .functions import two_pow

ACTIVATION_BITS = 15
ACTIVATION_MIN, ACTIVATION_MAX = -(1 << ACTIVATION_BITS), (1 << ACTIVATION_BITS) - 1
EXPONENT_LIMIT = 100                  # sample exponents are clamped to +-100 (float32 scales stay normal)
WEIGHT_BITS = 15
WEIGHT_LIMIT = 127 * 256 + 127
KERNEL_ENV = "SEVC_INTEGER_KERNEL"   # forces a CPU kernel: amx, avx512, avx2, generic
_BAND_ELEMENTS = 1 << 24              # unfolded input elements per int8 matrix product


def sample_exponents(x: torch.Tensor) -> torch.Tensor:
    """e [N] (int32): 2 ** (e - 1) <= max |x[n]| < 2 ** e per sample (frexp's exponent; 0 for an
    all-zero or a non-finite sample), clamped to [-EXPONENT_LIMIT, EXPONENT_LIMIT]."""
    largest = x.detach().abs().reshape(x.shape[0], -1).amax(dim=1)
    _, e = torch.frexp(largest)
    e = torch.where(torch.isfinite(largest), e, torch.zeros_like(e))
    return e.clamp(-EXPONENT_LIMIT, EXPONENT_LIMIT)


def quantize(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(a, e): float32 x [N, ...] as the integers a of its per-sample grids (float32 holding the
    integers exactly: the scaling by a power of two is exact wherever it does not round to 0)
    and the exponents e [N]."""
    e = sample_exponents(x)
    scale = two_pow(ACTIVATION_BITS - e).to(torch.float32).view(-1, *([1] * (x.dim() - 1)))
    scaled = torch.nan_to_num(x.detach().to(torch.float32) * scale, nan=0.0)
    return torch.round(scaled).clamp(ACTIVATION_MIN, ACTIVATION_MAX), e


def _weight_exponents(rows: torch.Tensor) -> torch.Tensor:
    """e_o [O]: the grid 2 ** (e_o - 15) of each row of rows [O, K] (float64)."""
    largest = rows.abs().amax(dim=1)
    _, e = torch.frexp(largest)
    over = torch.round(largest * two_pow(WEIGHT_BITS - e)) > WEIGHT_LIMIT
    return e + over.to(e.dtype)


@dataclass(frozen=True)
class IntegerWeight:
    """A weight [O, ...] on its grids: the integers q (int16, same shape), the exponents e_o [O]
    (int32) and sum q per output channel [O] (int64), on the weight's device."""

    q: torch.Tensor
    exponents: torch.Tensor
    total: torch.Tensor


def integer_weight(weight: torch.Tensor) -> IntegerWeight:
    """The weight's integers (see the module docstring)."""
    rows = weight.detach().to(torch.float64, copy=True).reshape(weight.shape[0], -1)
    e = _weight_exponents(rows)
    q = rows.mul_(two_pow(WEIGHT_BITS - e)[:, None]).round_()
    return IntegerWeight(q.to(torch.int16).reshape(weight.shape), e.to(torch.int32), q.sum(dim=1).to(torch.int64))


_INTEGER_WEIGHTS = TensorCache(integer_weight)


def cached_integer_weight(weight: torch.Tensor) -> IntegerWeight:
    """integer_weight(weight), computed once per weight tensor (and again when it changes)."""
    return _INTEGER_WEIGHTS(weight)


def finish(sums: torch.Tensor, e: torch.Tensor, w: IntegerWeight, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """float32(float64(S) * 2 ** (e - 15 + e_o - 15) + bias) for the exact sums S [N, O, ...]
    (float64) of samples with exponents e [N]."""
    channel = [1] * sums.dim()
    channel[1] = -1
    exponent = (e.to(torch.int64) - ACTIVATION_BITS).view(-1, *([1] * (sums.dim() - 1))) \
        + (w.exponents.to(sums.device, torch.int64) - WEIGHT_BITS).view(channel)
    y = sums * two_pow(exponent)
    if bias is not None:
        y = y + bias.detach().to(torch.float64).view(channel)
    return y.to(torch.float32)


def _kernel_size(weight: torch.Tensor) -> Tuple[int, int]:
    return tuple(weight.shape[2:]) if weight.dim() == 4 else (1, 1)


def reference_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=1, padding=0,
                     groups: int = 1) -> torch.Tensor:
    """The integer-mode convolution by its definition: the integer sums as a float64 convolution
    of the integers (every partial sum below 2 ** 53: exact in any order). weight [O, C / groups,
    kh, kw], or [O, C] for a 1x1 convolution."""
    a, e = quantize(x)
    w = cached_integer_weight(weight)
    q = w.q.to(a.device, torch.float64).reshape(weight.shape[0], -1, *_kernel_size(weight))
    with torch.backends.cudnn.flags(enabled=False):
        sums = F.conv2d(a.to(torch.float64), q, None, stride, padding, 1, groups)
    return finish(sums, e, w, bias)


@dataclass(frozen=True)
class ByteSlices:
    """A weight's integers as two signed bytes, q = 256 * high + low, as matrices [O, K] (int8,
    K padded to a multiple of 8 with zeros), on the weight's device."""

    high: torch.Tensor
    low: torch.Tensor


def _byte_slices(weight: torch.Tensor) -> ByteSlices:
    q = cached_integer_weight(weight).q.to(torch.int32).reshape(weight.shape[0], -1)
    q = F.pad(q, (0, -q.shape[1] % 8))
    low = ((q + 128) & 255) - 128
    return ByteSlices(((q - low) >> 8).to(torch.int8), low.to(torch.int8))


_BYTE_SLICES = TensorCache(_byte_slices)


def byte_slices(weight: torch.Tensor) -> ByteSlices:
    """The byte slices of a weight's integers (computed once per weight)."""
    return _BYTE_SLICES(weight)


def _int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [m, k] @ b [k, n] for int8 matrices (k a multiple of 8), exact in int32, as int64:
    torch._int_mm, its operands padded to the sizes it takes (m > 16, n a multiple of 8)."""
    m, n = a.shape[0], b.shape[1]
    a = F.pad(a, (0, 0, 0, max(17 - m, 0)))
    b = F.pad(b, (0, -n % 8))
    return torch._int_mm(a, b)[:m, :n].to(torch.int64)


def int8_sums(weight: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """S [O, L] = q [O, K] @ a [K, L] for the columns of a (float32 integers in [-32768, 32767]),
    exactly, by int8 matrix products combined in int64, as float64 (below 2 ** 53: exact): with the
    bytes high, low of a + 32768, a = 256 (high - 128) + (low - 128) + 128, and q = 256 q_high +
    q_low (byte_slices)."""
    slices = byte_slices(weight)
    offset = columns + 32768.0
    high = torch.floor(offset * (1.0 / 256.0))
    low = offset - 256.0 * high
    rows = slices.high.shape[1] - columns.shape[0]
    sums = 128 * cached_integer_weight(weight).total.to(columns.device)[:, None]
    for plane, scale in ((high, 256), (low, 1)):
        part = F.pad((plane - 128.0).to(torch.int8), (0, 0, 0, rows))
        sums = sums + scale * (256 * _int8_matmul(slices.high, part) + _int8_matmul(slices.low, part))
    return sums.to(torch.float64)


def int8_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=1,
                padding=0) -> torch.Tensor:
    """A dense convolution (groups 1) in integer mode by int8 matrix products (`torch._int_mm`,
    the integer units of GPUs): the result of `reference_conv2d`, computed by bands of output
    rows (each band's unfolded input at most 2 ** 24 elements)."""
    a, e = quantize(x)
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    kh, kw = _kernel_size(weight)
    w = cached_integer_weight(weight)
    a = F.pad(a, (pw, pw, ph, ph))
    n, c, height, width = a.shape
    out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    band = max(1, _BAND_ELEMENTS // max(1, c * kh * kw * out_w))
    output = torch.empty(n, weight.shape[0], out_h, out_w, dtype=torch.float32, device=x.device)
    for sample in range(n):
        for top in range(0, out_h, band):
            rows = min(band, out_h - top)
            window = a[sample:sample + 1, :, top * sh:(top + rows - 1) * sh + kh]
            columns = F.unfold(window, (kh, kw), stride=(sh, sw))[0]
            sums = int8_sums(weight, columns).view(1, -1, rows, out_w)
            output[sample:sample + 1, :, top:top + rows] = finish(sums, e[sample:sample + 1], w, bias)
    return output


SLICED_TAPS = 512  # taps per output of a float32 convolution of byte slices: sums stay below 2 ** 24


def sliced_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=1, padding=0,
                  groups: int = 1) -> torch.Tensor:
    """A convolution (grouped ones, on GPUs) in integer mode by float32 convolutions of byte slices:
    with a = 256 h + l (h = floor(a / 256) in [-128, 127], l in [0, 255]) and q = 256 q_high + q_low
    (signed bytes), S = 65536 (h * q_high) + 256 (h * q_low + l * q_high) + l * q_low, each
    convolution of at most SLICED_TAPS taps per output a sum of integers below 2 ** 24: exact in
    float32 with any order or fusing, with PyTorch's own kernels (cuDNN, which may use Winograd or
    FFT transforms, switched off). The result of `reference_conv2d`."""
    if weight[0].numel() > SLICED_TAPS:
        raise ValueError(f"sliced convolutions take at most {SLICED_TAPS} taps per output, not {weight[0].numel()}")
    a, e = quantize(x)
    high = torch.floor(a * (1.0 / 256.0))
    activations = (high, a - 256.0 * high)
    slices = byte_slices(weight)
    q = [s[:, :weight[0].numel()].to(torch.float32).reshape(weight.shape[0], -1, *_kernel_size(weight))
         for s in (slices.high, slices.low)]
    with torch.backends.cudnn.flags(enabled=False):
        part = [[F.conv2d(act, w, None, stride, padding, 1, groups).to(torch.float64) for w in q] for act in activations]
    sums = 65536.0 * part[0][0] + 256.0 * (part[0][1] + part[1][0]) + part[1][1]
    return finish(sums, e, cached_integer_weight(weight), bias)


def cpu_kernel() -> str:
    """The CPU kernel of integer mode: SEVC_INTEGER_KERNEL if set, else the best this CPU runs."""
    return os.environ.get(KERNEL_ENV) or _exact.integer_isa()


def math_kernel() -> str:
    """The kernel of integer mode's softmax: 'generic' where SEVC_INTEGER_KERNEL asks for the
    plain C++ or AVX2 kernels, else the best this CPU runs."""
    return "generic" if cpu_kernel() in ("generic", "avx2") else _exact.integer_math_isa()


def _pack(weight: torch.Tensor, groups: int, kernel: str):
    """The weight laid out for sevc._exact's integer kernel `kernel`."""
    w = integer_weight(weight)  # not kept: the packed weight holds its integers
    q = w.q.reshape(weight.shape[0], -1, *_kernel_size(weight))
    return _exact.IntegerWeight(q.numpy(), w.exponents.numpy(), groups, kernel)


_PACKED = TensorCache(_pack)  # once per weight, groups and kernel


def _cpu_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int,
                padding: Tuple[int, int], groups: int) -> torch.Tensor:
    bias64 = None if bias is None else cached_float64_bias(bias).numpy()
    output = _exact.integer_conv2d(x.detach().to(torch.float32).contiguous().numpy(),
                                   _PACKED(weight, groups, cpu_kernel()), bias64, stride, padding,
                                   torch.get_num_threads())
    return torch.from_numpy(output)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride, padding, dilation,
           groups: int) -> torch.Tensor:
    """F.conv2d in integer mode on x [N, C, H, W] (float32 result; weight [O, C / groups, kh, kw]
    or [O, C] for 1x1): sevc's C++ kernels on CPUs; elsewhere int8 matrix products for dense
    convolutions, float32 ones of byte slices for grouped ones (depthwise included), the float64
    reference for grouped ones of many taps."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if dilation != (1, 1):
        raise ValueError("integer numerics has no dilated convolutions")
    if x.device.type == "cpu" and stride[0] == stride[1] in (1, 2):
        return _cpu_conv2d(x, weight, bias, stride[0], padding, groups)
    if groups == 1:
        return int8_conv2d(x, weight, bias, stride, padding)
    if weight[0].numel() <= SLICED_TAPS:
        return sliced_conv2d(x, weight, bias, stride, padding, groups)
    return reference_conv2d(x, weight, bias, stride, padding, groups)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """F.linear in integer mode on x [N, ..., in] (one grid per sample, float32 result): a 1x1
    convolution of the tokens."""
    n, features = x.shape[0], x.shape[-1]
    tokens = x.reshape(n, -1, features).transpose(1, 2)[:, :, None, :]               # [N, in, 1, T]
    y = conv2d(tokens, weight, bias, 1, 0, 1, 1)                                     # [N, out, 1, T]
    return y[:, :, 0].transpose(1, 2).reshape(*x.shape[:-1], weight.shape[0])


# The constants of the softmax, as float32 values (written as their exact decimal values, which
# cpp/integer_math.cpp repeats).
LOG2E = 1.4426950216293335
LN2_HI, LN2_LO = 0.693359375, -0.00021219444170128554   # k * LN2_HI exact for |k| <= 2 ** 15
EXP_FLOOR = -87.0                                         # e ** d for d >= -87: 2 ** k stays normal
EXP_TERMS = (1.0, 1.0, 0.5, 0.1666666716337204, 0.0416666679084301, 0.008333333767950535, 0.0013888889225199819,
             0.00019841270113829523)                     # 1 / n! as float32


def _two_pow32(k: torch.Tensor) -> torch.Tensor:
    """2 ** k (float32) for integer-valued k in [-126, 127], built from its bits."""
    return ((torch.nan_to_num(k).to(torch.int32) + 127) << 23).view(torch.float32)


def _softmax_torch(x: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim of float32 x, by float32 operations each rounded once (see
    cpp/integer_math.h): e ** (x - max) from Cody-Waite reduction and a degree-7 polynomial, put
    on the grid of 2 ** -24 (integers q below 2 ** 24 + 1, exact in float32), their sum exact in
    float64 (below 2 ** 53, in any order), q / sum in float64, rounded to float32."""
    d = (x - x.amax(dim=-1, keepdim=True)).clamp(min=EXP_FLOOR)
    k = torch.round(d * LOG2E)
    r = (d - k * LN2_HI) - k * LN2_LO
    p = torch.full_like(r, EXP_TERMS[-1])
    for term in reversed(EXP_TERMS[:-1]):
        p = p * r + term
    q = torch.round((p * _two_pow32(k)) * float(2 ** 24)).to(torch.float64)
    return (q / q.sum(dim=-1, keepdim=True)).to(torch.float32)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Integer numerics' softmax over the last dim (float32; see _softmax_torch): sevc._exact's
    kernel for float32 CPU tensors."""
    x = x.to(torch.float32)
    if x.device.type != "cpu" or x.dim() == 0:
        return _softmax_torch(x)
    rows = x.contiguous()
    return torch.from_numpy(_exact.integer_softmax(rows.reshape(-1, x.shape[-1]).numpy(), torch.get_num_threads(),
                                                   kernel=math_kernel())).view(x.shape)


def reference_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in integer mode for a [..., m, k], b [..., k, n] (the same leading dims) by its
    definition: each matrix on its own grid, as a sample's activations are; the integer products
    summed exactly (a float64 product, below 2 ** 53), scaled, rounded to float32."""
    qa, ea = quantize(a.reshape(-1, *a.shape[-2:]))
    qb, eb = quantize(b.reshape(-1, *b.shape[-2:]))
    sums = torch.bmm(qa.to(torch.float64), qb.to(torch.float64))
    scale = two_pow(ea.to(torch.int64) + eb.to(torch.int64) - 2 * ACTIVATION_BITS).view(-1, 1, 1)
    return (sums * scale).to(torch.float32).view(*a.shape[:-1], b.shape[-1])


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in integer mode (see reference_matmul): sevc's C++ kernels on CPUs."""
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"integer matmul needs the same leading dims, got {tuple(a.shape)} @ {tuple(b.shape)}")
    if a.device.type != "cpu":
        return reference_matmul(a, b)
    a3 = a.detach().to(torch.float32).reshape(-1, *a.shape[-2:]).contiguous()
    b3 = b.detach().to(torch.float32).reshape(-1, *b.shape[-2:]).contiguous()
    out = _exact.integer_matmul(a3.numpy(), b3.numpy(), torch.get_num_threads(), cpu_kernel())
    return torch.from_numpy(out).view(*a.shape[:-1], b.shape[-1])


VIA_FLOAT64_ROWS = 1 << 20  # elements a float64 part of via_float64 holds, at least one row


def via_float64(function, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """function(x) of a portable-mode float64 operation on the last dim of x (elementwise, or row by
    row as layer norm) for float32 x, its result rounded to float32: computed part by part (whole
    rows), so that the float64 copies stay small."""
    rows = x.reshape(-1, x.shape[-1]) if x.dim() else x.reshape(1, 1)
    out = torch.empty(rows.shape, dtype=torch.float32, device=x.device)
    step = max(1, VIA_FLOAT64_ROWS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], step):
        out[start:start + step] = function(rows[start:start + step].to(torch.float64), **kwargs)
    return out.reshape(x.shape)
