"""Elementwise functions from correctly rounded IEEE-754 operations only.

Each function below is a fixed sequence of float64 additions, subtractions, multiplications,
divisions of tensors by tensors, square roots, roundings, comparisons and bit manipulations, so
every CPU and GPU computes the very same bits (libm's exp, log, erf, tanh, ... differ by a few
units in the last place between platforms). Accuracy is within a few ulp of the true values.
Division by a Python scalar is avoided on purpose (on CUDA PyTorch multiplies by its reciprocal).

Each public function with a C++ kernel (exp, sigmoid, tanh, softplus, normal_cdf, gelu) runs it for
float64 CPU tensors (sevc._exact, the same bits much faster: each element computes only the branch
it takes, in registers); its torch definition, `_<name>_torch`, runs everywhere else.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import _exact

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits: k * LN2_HI is exact
LN2_LO = 1.90821492927058770002e-10  # ln 2 - LN2_HI
SQRT_HALF = 0.70710678118654752440
TWO_OVER_SQRT_PI = 1.12837916709551257390
INV_SQRT_PI = 0.56418958354775628695
EXP_MIN, EXP_MAX = -745.0, 709.0
_EXP_TERMS = [1.0 / math.factorial(n) for n in range(14)]      # exp(r), |r| <= ln(2) / 2
_ATANH_TERMS = [1.0 / (2 * n + 1) for n in range(1, 13)]       # 2 atanh(s) = log((1 + s) / (1 - s))
_ERF_TERMS = [(-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(45)]  # erf's Taylor series
ERF_SERIES_LIMIT = 2.5  # erf by its series below, by the continued fraction of erfc above
ERFC_ZERO = 27.0        # erfc(x) underflows from here on
_ERFC_DEPTH = 60


def _horner(x: torch.Tensor, coefficients) -> torch.Tensor:
    """c0 + x (c1 + x (c2 + ...)), evaluated from the last coefficient."""
    result = torch.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result = result * x + c
    return result


def two_pow(k: torch.Tensor) -> torch.Tensor:
    """2 ** k (float64) for integer-valued k in [-1022, 1023], built from its bits."""
    return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)


def _exp_torch(x: torch.Tensor) -> torch.Tensor:
    """e ** x: x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite), exp(r) by its degree-13 Taylor
    polynomial, scaled by 2 ** k (in two steps where the result is subnormal); x is clamped to
    [-745, 709]."""
    x = x.clamp(EXP_MIN, EXP_MAX)
    k = torch.round(x * LOG2E)
    r = (x - k * LN2_HI) - k * LN2_LO
    normal = k.clamp(-1022, 1023)
    return (_horner(r, _EXP_TERMS) * two_pow(normal)) * two_pow(k - normal)


def log(x: torch.Tensor) -> torch.Tensor:
    """Natural logarithm of x > 0: x = m 2 ** e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s),
    s = (m - 1) / (m + 1), by its series."""
    m, e = torch.frexp(x)
    low = m < SQRT_HALF
    m = torch.where(low, m * 2.0, m)
    e = (e - low.to(e.dtype)).to(x.dtype)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    log_m = 2.0 * s + 2.0 * s * (s2 * _horner(s2, _ATANH_TERMS))
    return e * LN2_HI + (e * LN2_LO + log_m)


def _sigmoid_torch(x: torch.Tensor) -> torch.Tensor:
    """1 / (1 + e ** -x)."""
    return torch.ones_like(x) / (1.0 + _exp_torch(-x))


def _tanh_torch(x: torch.Tensor) -> torch.Tensor:
    """2 sigmoid(2x) - 1."""
    return 2.0 * _sigmoid_torch(2.0 * x) - 1.0


def log1p(u: torch.Tensor) -> torch.Tensor:
    """log(1 + u) for u > -1, accurate for small u: log(w) - ((w - 1) - u) / w with w = 1 + u."""
    w = 1.0 + u
    return torch.where(w == 1.0, u, log(w) - ((w - 1.0) - u) / w)


def _softplus_torch(x: torch.Tensor, threshold: float = 20.0) -> torch.Tensor:
    """log(1 + e ** x), and x itself above `threshold` (as torch's softplus). (x.clamp, not
    torch.minimum, whose NaN differs between its vectorized and scalar loops: a NaN stays x's.)"""
    return torch.where(x > threshold, x, log1p(_exp_torch(x.clamp(max=threshold))))


def erfc(x: torch.Tensor) -> torch.Tensor:
    """The complementary error function: 1 - erf's Taylor series for |x| < 2.5, the continued
    fraction of erfc up to |x| < 27, 0 beyond (and 2 - erfc(-x) for negative x)."""
    a = x.abs()
    near = 1.0 - _erf_series(a.clamp(max=ERF_SERIES_LIMIT))
    far = _erfc_fraction(a.clamp(min=ERF_SERIES_LIMIT, max=ERFC_ZERO))
    value = torch.where(a < ERF_SERIES_LIMIT, near, torch.where(a < ERFC_ZERO, far, torch.zeros_like(a)))
    return torch.where(x < 0, 2.0 - value, value)


def erf(x: torch.Tensor) -> torch.Tensor:
    """The error function: its Taylor series for |x| < 2.5, 1 - erfc beyond."""
    a = x.abs()
    near = _erf_series(a.clamp(max=ERF_SERIES_LIMIT))
    far = 1.0 - _erfc_fraction(a.clamp(min=ERF_SERIES_LIMIT, max=ERFC_ZERO))
    value = torch.where(a < ERF_SERIES_LIMIT, near, torch.where(a < ERFC_ZERO, far, torch.ones_like(a)))
    return torch.where(x < 0, -value, value)


def _erf_series(x: torch.Tensor) -> torch.Tensor:
    """erf(x) = 2 / sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1)), for |x| <= 2.5."""
    return TWO_OVER_SQRT_PI * x * _horner(x * x, _ERF_TERMS)


def _erfc_fraction(x: torch.Tensor) -> torch.Tensor:
    """erfc(x) for x >= 2.5: e ** -x^2 / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))),
    the continued fraction evaluated from a fixed depth."""
    fraction = x.clone()
    for n in range(_ERFC_DEPTH, 0, -1):
        fraction = x + torch.full_like(x, 0.5 * n) / fraction
    return _exp_torch(-(x * x)) * INV_SQRT_PI / fraction


def _normal_cdf_torch(x: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF, erfc(-x / sqrt 2) / 2."""
    return 0.5 * erfc(-x * SQRT_HALF)


def _gelu_torch(x: torch.Tensor) -> torch.Tensor:
    """x times the standard normal CDF of x (the exact GELU)."""
    return x * _normal_cdf_torch(x)


# --- the public functions: C++ kernels for CPU tensors, the torch definitions elsewhere -----------

def cpu_kernels(x: torch.Tensor) -> bool:
    """Whether x's portable functions run in sevc._exact's C++ kernels: float64 CPU tensors outside
    autograd. The kernels compute the very bits of the torch definitions above (the _*_torch
    functions, which run on other devices and dtypes), only faster."""
    return x.device.type == "cpu" and x.dtype == torch.float64 and not (x.requires_grad and torch.is_grad_enabled())


def run_cpu_kernel(kernel, x: torch.Tensor, *args):
    """kernel(x as a C-contiguous numpy array, *args, threads), numpy arrays out as tensors."""
    out = kernel(x.detach().contiguous().numpy(), *args, torch.get_num_threads())
    return tuple(map(torch.from_numpy, out)) if isinstance(out, tuple) else torch.from_numpy(out)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root (IEEE-754). PyTorch's CPU kernel is not (it is off by one
    ulp for about 1% of float64 inputs), so CPU tensors go through numpy, whose sqrt is the
    processor's IEEE instruction; CUDA's float64 sqrt is correctly rounded."""
    if x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled()):
        return torch.from_numpy(np.sqrt(x.detach().contiguous().numpy()))
    return torch.sqrt(x)


def exp(x: torch.Tensor) -> torch.Tensor:
    """e ** x (_exp_torch)."""
    return run_cpu_kernel(_exact.exp, x) if cpu_kernels(x) else _exp_torch(x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """1 / (1 + e ** -x)."""
    return run_cpu_kernel(_exact.sigmoid, x) if cpu_kernels(x) else _sigmoid_torch(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """2 sigmoid(2x) - 1."""
    return run_cpu_kernel(_exact.tanh, x) if cpu_kernels(x) else _tanh_torch(x)


def softplus(x: torch.Tensor, threshold: float = 20.0) -> torch.Tensor:
    """log(1 + e ** x), and x itself above `threshold` (as torch's softplus)."""
    if cpu_kernels(x) and not math.isnan(threshold):
        return run_cpu_kernel(_exact.softplus, x, float(threshold))
    return _softplus_torch(x, threshold)


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF, erfc(-x / sqrt 2) / 2."""
    return run_cpu_kernel(_exact.normal_cdf, x) if cpu_kernels(x) else _normal_cdf_torch(x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """x times the standard normal CDF of x (the exact GELU)."""
    return run_cpu_kernel(_exact.gelu, x) if cpu_kernels(x) else _gelu_torch(x)
