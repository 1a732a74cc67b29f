"""sevc._exact's portable functions: bit for bit equal to their torch definitions.

exp, sigmoid, tanh, softplus, normal_cdf, gelu (sevc.numerics.functions), softmax, the statistics of
layer_norm and to_grid (sevc.numerics.exact) have C++ kernels for CPU tensors; the torch definitions (the
`_<name>_torch` functions) run elsewhere and are the specification. Every output must have the bits
of the definition's, compared as int64 so that -0.0 and NaN payloads count, on: a million values
over wide ranges (normal at several scales, uniform over [-800, 800]), values a few ulp around every
branch boundary (exp's clamps and its two-step subnormal scaling, softplus's threshold and its
log1p cut, erfc's 2.5 and 27), subnormals, +-0, +-inf and NaNs with several payloads; with 1, 2
and 3 threads and each compilation of the kernels.
"""
from __future__ import annotations

import math
import struct
from fractions import Fraction

import numpy as np
import pytest
import torch

from sevc import _exact
from sevc.numerics import exact, functions

KERNELS = ["auto", "generic"]  # auto is avx2 where the CPU has it
THREADS = [1, 2, 3]
F64 = torch.float64
ELEMENTWISE = {
    "exp": functions._exp_torch,
    "sigmoid": functions._sigmoid_torch,
    "tanh": functions._tanh_torch,
    "softplus": functions._softplus_torch,
    "normal_cdf": functions._normal_cdf_torch,
    "gelu": functions._gelu_torch,
}


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int64)


def assert_same_bits(ours: torch.Tensor, reference: torch.Tensor, inputs: torch.Tensor, what: str) -> None:
    assert ours.shape == reference.shape and ours.dtype == F64
    differ = bits(ours) != bits(reference)
    if differ.any():
        first = differ.flatten().nonzero().flatten()[:5].tolist()
        show = [(inputs.flatten()[i].item(), ours.flatten()[i].item(), reference.flatten()[i].item()) for i in first]
        pytest.fail(f"{what}: {int(differ.sum())} elements differ from the definition, e.g. (x, ours, torch) {show}")


def from_bits(values) -> list:
    return [struct.unpack("<d", struct.pack("<Q", v))[0] for v in values]


def around(values, ulps: int = 4) -> torch.Tensor:
    """Each value, its negation, and their neighbours up to `ulps` ulp away."""
    centre = torch.tensor([s * v for v in values for s in (1.0, -1.0)], dtype=F64)
    out, up, down = [centre], centre, centre
    for _ in range(ulps):
        up, down = torch.nextafter(up, up.new_tensor(math.inf)), torch.nextafter(down, down.new_tensor(-math.inf))
        out += [up, down]
    return torch.cat(out)


LN2 = math.log(2.0)
BOUNDARIES = (
    [745.0, 709.0, 744.5, 708.5, 372.5, 354.5, 1.0, 0.5]                     # exp's clamps, and of -x, 2x
    + [(k + 0.5) * LN2 for k in range(-1076, -1019)] + [(k + 0.5) * LN2 for k in range(1019, 1024)]  # 2^k steps
    + [1022 * LN2, 1074 * LN2, 20.0, 36.7368005696771, 37.0, 53 * LN2]       # subnormal scaling; softplus
    + [2.5, 27.0, 2.5 / functions.SQRT_HALF, 27.0 / functions.SQRT_HALF]     # erf / erfc branches (and x)
    + [3.5355339059327373, 38.18376618407357, 1e-300, 1e-200, 1e-20]
)
SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
           -2.2250738585072014e-308, 1e-310, -1e-310, 1.7976931348623157e308, -1.7976931348623157e308]
NANS = from_bits([0x7FF8000000000123, 0xFFF8000000000456, 0x7FF0000000000001, 0xFFF0000000000777,
                  0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF])


def erfc_boundaries() -> torch.Tensor:
    """Inputs x of normal_cdf / gelu whose argument -x sqrt(1/2) lies a few ulp around 2.5 and 27 (and
    exactly on them): a scan of 64 ulp each side of 2.5 / sqrt(1/2) and 27 / sqrt(1/2)."""
    found = []
    for limit in (2.5, 27.0):
        x = torch.tensor([limit / functions.SQRT_HALF], dtype=F64)
        steps = [x]
        up, down = x, x
        for _ in range(64):
            up, down = torch.nextafter(up, up.new_tensor(math.inf)), torch.nextafter(down, down.new_tensor(-math.inf))
            steps += [up, down]
        scan = torch.cat(steps)
        assert ((scan * functions.SQRT_HALF) == limit).any(), "the scan misses the boundary itself"
        found += [scan, -scan]
    return torch.cat(found)


@pytest.fixture(scope="module")
def values() -> torch.Tensor:
    g = torch.Generator().manual_seed(20250)
    n = 130_000
    parts = [torch.randn(n, dtype=F64, generator=g) * scale for scale in (0.1, 1.0, 3.0, 10.0, 100.0, 1000.0)]
    parts.append(torch.empty(2 * n, dtype=F64).uniform_(-800.0, 800.0, generator=g))
    parts.append(torch.randn(20_000, dtype=F64, generator=g) * 1e-310)  # subnormals
    parts += [around(BOUNDARIES), erfc_boundaries(), torch.tensor(SPECIAL + NANS, dtype=F64)]
    x = torch.cat(parts)
    return x[torch.randperm(len(x), generator=g)]  # specials both in vectors and in tails


@pytest.fixture(scope="module")
def references(values) -> dict:
    return {name: f(values) for name, f in ELEMENTWISE.items()}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_bits(name, values, references):
    assert len(values) > 1_000_000
    kernel = getattr(_exact, name)
    for kind in KERNELS:
        for threads in THREADS:
            ours = torch.from_numpy(kernel(values.numpy(), threads=threads, kernel=kind))
            assert_same_bits(ours, references[name], values, f"{name} threads={threads} kernel={kind}")


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_small_and_shaped(name):
    """Shapes (0-d, empty, 3-D, lengths around the vector widths): the same as element by element."""
    kernel, reference = getattr(_exact, name), ELEMENTWISE[name]
    g = torch.Generator().manual_seed(7)
    for shape in [(), (0,), (1,), (3,), (7,), (8,), (9,), (31,), (33,), (2, 3, 5), (4, 0, 2)]:
        x = torch.randn(shape, dtype=F64, generator=g) * 4
        for kind in KERNELS:
            ours = torch.from_numpy(kernel(x.numpy(), threads=2, kernel=kind))
            assert_same_bits(ours, reference(x), x, f"{name} shape={shape}")
    specials = torch.tensor(SPECIAL + NANS, dtype=F64)  # every special in a short tail, alone
    for i in range(len(specials)):
        x = specials[i:i + 1]
        assert_same_bits(torch.from_numpy(kernel(x.numpy())), reference(x), x, f"{name} of {x.item()}")


def test_softplus_threshold(values):
    x = values[:200_000]
    for threshold in (20.0, 0.0, -3.5, 5.0, math.inf, -math.inf):
        ours = torch.from_numpy(_exact.softplus(x.numpy(), threshold, threads=2))
        assert_same_bits(ours, functions._softplus_torch(x, threshold), x, f"softplus threshold={threshold}")


def softmax_rows(length: int, g: torch.Generator) -> torch.Tensor:
    rows = [torch.randn(64, length, dtype=F64, generator=g) * scale for scale in (0.01, 1.0, 30.0, 1000.0)]
    rows.append(torch.empty(16, length, dtype=F64).uniform_(-800.0, 800.0, generator=g))  # large spreads
    masked = torch.randn(32, length, dtype=F64, generator=g)
    masked[torch.rand(32, length, generator=g) < 0.3] = -math.inf  # attention masks
    masked[0, :] = -math.inf                                       # all masked
    rows.append(masked)
    special = torch.randn(8, length, dtype=F64, generator=g)
    special[0, length // 2] = math.inf
    special[1, 0] = math.nan
    special[2, length - 1] = -math.nan
    special[3, :] = 0.0
    special[4, :] = 5e-324
    special[5, 0] = NANS[0]
    special[6, :] = -0.0
    rows.append(special)
    return torch.cat(rows)


@pytest.mark.parametrize("length", [1, 2, 7, 8, 64, 100, 256])
def test_softmax_bits(length):
    x = softmax_rows(length, torch.Generator().manual_seed(length))
    reference = exact._softmax_torch(x)
    for kind in KERNELS:
        for threads in THREADS:
            ours = torch.from_numpy(_exact.softmax(x.numpy(), threads=threads, kernel=kind))
            assert_same_bits(ours, reference, x, f"softmax length={length} threads={threads} kernel={kind}")
    four_d = x[: (len(x) // 6) * 6].reshape(2, 3, -1, length)  # leading dims are rows too
    assert_same_bits(torch.from_numpy(_exact.softmax(four_d.numpy(), threads=2)), exact._softmax_torch(four_d),
                     four_d, "softmax 4-D")


def layer_norm_rows(length: int, g: torch.Generator) -> torch.Tensor:
    rows = [torch.randn(48, length, dtype=F64, generator=g) * scale + shift
            for scale, shift in ((1.0, 0.0), (1e-3, 5.0), (100.0, -3.0), (1e8, 0.0), (1e-8, 1e-7))]
    special = torch.randn(9, length, dtype=F64, generator=g)
    special[0, :] = 0.0                      # no variance: sqrt(eps)
    special[1, :] = 3.25                     # constant
    special[2, 0] = math.inf
    special[3, length // 2] = math.nan
    special[4, :] = torch.randn(length, dtype=F64, generator=g) * 1e-310  # subnormal rows
    special[5, :] = torch.randn(length, dtype=F64, generator=g) * 1e300   # near overflow
    special[6, :] = -math.inf
    special[7, :] = -0.0
    special[8, :] = torch.randn(length, dtype=F64, generator=g) * 1e-300
    rows.append(special)
    return torch.cat(rows)


@pytest.mark.parametrize("length", [1, 3, 8, 64, 96, 256])
def test_layer_norm_statistics_bits(length):
    """The deviation and variance of exact.layer_norm (its square root and affine map stay in torch)."""
    x = layer_norm_rows(length, torch.Generator().manual_seed(100 + length))
    deviation, variance = exact._layer_norm_statistics_torch(x)
    for kind in KERNELS:
        for threads in THREADS:
            ours = _exact.layer_norm_statistics(x.numpy(), threads=threads, kernel=kind)
            what = f"layer_norm_statistics length={length} threads={threads} kernel={kind}"
            assert_same_bits(torch.from_numpy(ours[0]), deviation, x, what + " deviation")
            assert_same_bits(torch.from_numpy(ours[1]), variance, x[..., :1], what + " variance")
    three_d = x[: (len(x) // 3) * 3].reshape(3, -1, length)
    ours = _exact.layer_norm_statistics(three_d.numpy(), threads=2)
    for mine, theirs in zip(ours, exact._layer_norm_statistics_torch(three_d)):
        assert_same_bits(torch.from_numpy(mine), theirs, three_d, "layer_norm_statistics 3-D")


@pytest.mark.parametrize("shape,dims", [((300, 7), (-1,)), ((5, 4, 3, 9), (1, 2, 3)), ((6, 5, 64), (-2, -1)),
                                        ((2, 3, 2, 4), (3,)), ((1000,), (0,))])
def test_to_grid_bits(shape, dims):
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, dtype=F64, generator=g) * torch.logspace(-8, 8, shape[-1], dtype=F64)
    flat = x.view(-1)
    flat[::97] = 0.0
    flat[5] = math.inf
    flat[11] = math.nan
    flat[13] = -0.0
    flat[17] = 5e-324
    if shape[0] > 1:
        x[1] = torch.randn(shape[1:], dtype=F64, generator=g) * 1e-308  # subnormal maxima: two_pow's wrap
    for bits_ in (1, 13, 24, 52):
        reference = exact._to_grid_torch(x, bits_, dims)
        for kind in KERNELS:
            for threads in THREADS:
                ours = torch.from_numpy(_exact.to_grid(x.numpy(), bits_, len(dims), threads=threads, kernel=kind))
                assert_same_bits(ours, reference, x, f"to_grid bits={bits_} dims={dims} threads={threads}")


class Spy:
    """sevc._exact, counting the calls of its functions."""

    def __init__(self):
        self.calls = {}

    def __getattr__(self, name):
        function = getattr(_exact, name)

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return function(*args, **kwargs)
        return counted


def test_public_functions_dispatch(monkeypatch):
    """functions.* / exact.* on CPU float64 run the kernels and give the definition's bits; other
    dtypes, autograd, and dims that are not trailing take the torch definitions."""
    spy = Spy()
    monkeypatch.setattr(functions, "_exact", spy)
    monkeypatch.setattr(exact, "_exact", spy)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, 10, dtype=F64, generator=g) * 5
    strided = x.transpose(1, 2)  # not contiguous
    for name, reference in ELEMENTWISE.items():
        public = getattr(functions, name)
        assert_same_bits(public(strided), reference(strided), strided, f"functions.{name}")
        single = x.float()  # not float64: the torch definition
        assert torch.equal(public(single), reference(single)) and public(single).dtype == reference(single).dtype
    assert_same_bits(exact.softmax(strided), exact._softmax_torch(strided), strided, "exact.softmax")
    w, b = torch.randn(6, generator=g), torch.randn(6, generator=g)  # float32 parameters
    assert_same_bits(exact.layer_norm(strided, w, b, 1e-5), exact._layer_norm_torch(strided, w, b, 1e-5), strided,
                     "exact.layer_norm")
    for dims in [(-1,), (1, 2), (0, 1, 2), (0,), (0, 2)]:
        assert_same_bits(exact.to_grid(x, 24, dims), exact._to_grid_torch(x, 24, dims), x, f"to_grid dims={dims}")
    leaf = x.clone().requires_grad_()
    functions.gelu(leaf).sum().backward()  # the torch path, differentiable
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert spy.calls == {**{name: 1 for name in ELEMENTWISE}, "softmax": 1, "layer_norm_statistics": 1, "to_grid": 3}


def test_arguments_are_checked():
    x = np.zeros((3, 4))
    with pytest.raises(TypeError, match="float64"):
        _exact.exp(np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        _exact.gelu(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="C-contiguous"):
        _exact.sigmoid(x.T)
    with pytest.raises(ValueError, match="threads"):
        _exact.tanh(x, threads=0)
    with pytest.raises(ValueError, match="kernel"):
        _exact.exp(x, kernel="sse9")
    with pytest.raises(ValueError, match="threshold"):
        _exact.softplus(x, math.nan)
    with pytest.raises(ValueError, match="at least 1 dim"):
        _exact.softmax(np.zeros(()))
    with pytest.raises(ValueError, match="at least 1 dim"):
        _exact.layer_norm_statistics(np.zeros(()))
    with pytest.raises(ValueError, match="bits"):
        _exact.to_grid(x, 53, 1)
    with pytest.raises(ValueError, match="dims"):
        _exact.to_grid(x, 24, 3)
    assert _exact.softmax(np.zeros((0, 5))).shape == (0, 5)
    assert _exact.portable_isa() in ("avx2", "generic")


def test_sqrt_is_correctly_rounded():
    """r = sqrt(x) is the float64 nearest the true root: (r - ulp/2)^2 < x < (r + ulp/2)^2 exactly
    (with ties, which cannot occur for a square root, excluded)."""
    g = torch.Generator().manual_seed(7)
    x = torch.cat([torch.rand(3000, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-8, 9, (3000,), generator=g),
                   torch.tensor([1e-5, 1.0 + 1e-5, 2.0, 4.0])])
    for value, root in zip(x.tolist(), functions.sqrt(x).tolist()):
        ulp = Fraction(math.ulp(root))
        assert (Fraction(root) - ulp / 2) ** 2 < Fraction(value) < (Fraction(root) + ulp / 2) ** 2, value
