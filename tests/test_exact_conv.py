"""sevc._exact.conv2d: the whole exact convolution of the portable numerics mode in one call.

conv2d(input, weight, bias, stride, padding, groups, activation_bits, threads) must return, bit for
bit, what the Python reference below computes with torch: the input rounded onto its per-sample
grid, torch's float64 F.conv2d with the weights on their grids (exact.weight_grid), the bias added
once. The inputs are NOT on any grid (random values, magnitudes spread over six decades across the
channels), so the rounding itself is checked too, not only the sums.

The sums of the kernel are checked on their own (activation_bits=None: no rounding) on inputs and
weights within the exactness bound (|x| <= 2**20, sum |w| <= 2**30 per output channel, so every
partial sum is below 2**51) scaled by powers of two, covering the kernel's edges: channel counts that
are and are not multiples of its 4-channel tiles, widths below and around its 12-column tiles,
several input-channel chunks, column blocks and row bands.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sevc import _exact
from sevc.numerics.exact import weight_grid

KERNELS = ["auto", "generic"] if _exact.isa() == "avx2" else ["auto"]
BITS = 24


# --- the reference ------------------------------------------------------------------------------

def two_pow(k: torch.Tensor) -> torch.Tensor:
    """2 ** k exactly (float64), for integer k in [-1022, 1023]."""
    assert int(k.min()) >= -1022 and int(k.max()) <= 1023
    return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)


def reference(x, w, bias, stride, padding, groups=1, bits=BITS, *, literal=False):
    """The portable mode's convolution in torch. literal=True: with the powers of two written
    2.0 ** k, which torch computes in float32 (exact for |x| in [2**-104, 2**151), which holds
    realistic activations), as the specification of the kernel first wrote it."""
    largest = x.abs().amax(dim=(1, 2, 3), keepdim=True)
    _, e = torch.frexp(largest)
    if literal:
        xq = torch.round(x * 2.0 ** (bits - e)) * 2.0 ** (e - bits)
    else:
        xq = torch.round(x * two_pow(bits - e)) * two_pow(e - bits)
    y = F.conv2d(xq, w, None, stride, padding, 1, groups)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def ours(x, w, bias, stride, padding, groups=1, bits=BITS, threads=1, kernel="auto") -> torch.Tensor:
    out = _exact.conv2d(x.contiguous().numpy(), w.contiguous().numpy(),
                        None if bias is None else bias.contiguous().numpy(), stride, padding, groups, bits, threads,
                        kernel=kernel)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    return torch.from_numpy(out)


def assert_same_bits(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal values and equal bits (signs of zeros included: every sum starts at +0, as torch's)."""
    assert out.shape == ref.shape and out.dtype == ref.dtype == torch.float64
    assert torch.equal(out, ref), (out - ref).abs().max().item()
    assert torch.equal(out.view(torch.int64), ref.view(torch.int64))


def spread_case(seed, n, c, h, w, o, k, groups=1, low=-3.0, high=3.0):
    """A non-grid input [n, c, h, w]: normal values times 10 ** (low .. high) across the channels
    (and a different scale per sample); weights [o, c / groups, k, k] on their grids; a bias."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(low, high, c, dtype=torch.float64)[torch.randperm(c, generator=gen)]
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64) * scales.view(1, -1, 1, 1)
    x = x * torch.logspace(0, -2, n, dtype=torch.float64).view(-1, 1, 1, 1)
    wt = weight_grid(torch.randn(o, c // groups, k, k, generator=gen) * (c // groups * k * k) ** -0.5)
    bias = torch.randn(o, generator=gen, dtype=torch.float64)
    return x, wt, bias


# --- the full convolution: rounding, sums, bias ---------------------------------------------------

# (n, c, h, w, o, k, stride, padding, groups): every kind of layer the models have, and the edges
# of each path (depthwise widths below and around a vector, planes of one row, ...).
FULL_CASES = [
    (2, 8, 13, 17, 8, 3, 1, 1, 1),
    (1, 13, 9, 14, 7, 3, 1, 1, 1),
    (1, 3, 17, 23, 16, 3, 2, 1, 1),        # the I-frame input layer
    (2, 24, 11, 19, 20, 3, 2, 1, 1),
    (1, 16, 16, 18, 32, 2, 2, 0, 1),       # 2x2 stride-2 downsampling
    (2, 13, 7, 9, 6, 2, 2, 0, 1),
    (2, 64, 12, 19, 48, 1, 1, 0, 1),       # 1x1: one long row per channel
    (1, 13, 11, 11, 8, 1, 2, 0, 1),        # 1x1 stride 2
    (1, 8, 9, 9, 8, 1, 1, 1, 1),           # 1x1 with padding
    (1, 32, 15, 19, 24, 7, 1, 3, 1),       # 7x7
    (2, 5, 10, 12, 9, 7, 1, 2, 1),
    (1, 48, 20, 30, 48, 3, 1, 1, 48),      # depthwise 3x3 (the DepthConv blocks)
    (2, 13, 9, 14, 13, 3, 1, 1, 13),
    (1, 4, 1, 1, 4, 3, 1, 1, 4),
    (1, 3, 5, 3, 3, 3, 1, 1, 3),
    (1, 5, 6, 4, 5, 3, 1, 1, 5),
    (1, 6, 3, 8, 6, 3, 1, 1, 6),
    (1, 4, 7, 13, 4, 3, 1, 0, 4),          # depthwise 3x3 without padding
    (1, 4, 7, 9, 4, 3, 1, 2, 4),
    (1, 6, 9, 11, 6, 5, 1, 2, 6),          # depthwise 5x5 and 7x7 (one-channel tiles)
    (1, 3, 12, 13, 3, 7, 1, 3, 3),
    (2, 6, 9, 11, 6, 1, 1, 0, 6),          # depthwise 1x1
    (1, 8, 11, 13, 8, 3, 2, 1, 8),         # depthwise stride 2 (grouped path)
    (1, 96, 9, 11, 48, 1, 1, 0, 16),       # grouped 96 -> 48, 16 groups, 1x1 (OffsetDiversity)
    (2, 12, 10, 9, 8, 3, 1, 1, 4),         # grouped 3x3
    (1, 16, 12, 13, 32, 3, 2, 1, 2),
    (1, 4, 9, 9, 8, 3, 1, 1, 4),           # one input channel, two outputs per group
    (1, 18, 8, 10, 12, 2, 2, 0, 6),
]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("with_bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("case", FULL_CASES, ids=lambda c: "n{}c{}_{}x{}_o{}_k{}s{}p{}g{}".format(*c))
def test_full_convolution_bit_for_bit(case, with_bias, threads, kernel):
    n, c, h, w, o, k, stride, padding, groups = case
    x, wt, bias = spread_case(sum(case), n, c, h, w, o, k, groups)
    bias = bias if with_bias else None
    assert_same_bits(ours(x, wt, bias, stride, padding, groups, threads=threads, kernel=kernel),
                     reference(x, wt, bias, stride, padding, groups))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [
    (1, 48, 64, 128, 48, 3, 1, 1),         # several column blocks and row bands
    (1, 64, 40, 104, 64, 1, 1, 1),         # 1x1 over several column slices
    (1, 96, 60, 104, 96, 3, 2, 1),
    (1, 32, 30, 52, 64, 7, 1, 1),
    (1, 3, 96, 160, 128, 3, 2, 1),
    (1, 48, 120, 208, 48, 3, 1, 48),       # depthwise, one plane per unit
    (1, 2, 600, 560, 2, 3, 1, 2),          # depthwise, fewer planes than threads: bands of rows
    (2, 96, 60, 104, 48, 1, 1, 16),        # grouped 1x1
    (1, 64, 24, 40, 64, 3, 1, 4),
], ids=lambda s: "n{}c{}_{}x{}_o{}_k{}s{}g{}".format(*s))
def test_model_shapes_and_threads_bit_for_bit(shape, threads):
    """Reduced versions of the model's layers, large enough to be split between threads (the kernel
    uses fewer threads than asked for below about 2M multiply-adds per thread)."""
    n, c, h, w, o, k, stride, groups = shape
    x, wt, bias = spread_case(c * o + k, n, c, h, w, o, k, groups)
    assert_same_bits(ours(x, wt, bias, stride, k // 2, groups, threads=threads),
                     reference(x, wt, bias, stride, k // 2, groups))


def random_geometries(seed: int, count: int, max_size: int):
    """`count` random convolution geometries (kh, kw, stride, (ph, pw), h, w) that fit: kernels
    1..7 (square more often than not), strides 1..2, paddings 0..3, sizes 1..max_size."""
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < count:
        kh, kw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        if rng.random() < 0.6:
            kw = kh
        stride = int(rng.integers(1, 3))
        ph, pw = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        h, w = int(rng.integers(1, max_size + 1)), int(rng.integers(1, max_size + 1))
        if h + 2 * ph >= kh and w + 2 * pw >= kw:
            found.append((rng, kh, kw, stride, (ph, pw), h, w))
    return found


def test_random_geometries_bit_for_bit():
    """Random geometries: sizes 1..40, channels, groups, kernels 1..7 (square and not), strides,
    paddings 0..3, batches, activation bits, with and without bias, 1..3 threads, both kernels."""
    for done, (rng, kh, kw, stride, padding, h, w) in enumerate(random_geometries(3, 120, 40)):
        groups = int(rng.choice([1, 1, 2, 3]))
        n, c, o = int(rng.integers(1, 3)), groups * int(rng.integers(1, 14)), groups * int(rng.integers(1, 14))
        if rng.random() < 0.2:
            c = o = groups = int(rng.integers(1, 9))  # depthwise
        bits = int(rng.choice([8, 16, 24, 24, 30]))
        gen = torch.Generator().manual_seed(done)
        x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64) * torch.logspace(-3, 3, c).view(1, -1, 1, 1)
        wt = weight_grid(torch.randn(o, c // groups, kh, kw, generator=gen), bits)
        bias = torch.randn(o, generator=gen, dtype=torch.float64) if done % 2 else None
        kernel = KERNELS[done % len(KERNELS)]
        assert_same_bits(ours(x, wt, bias, stride, padding, groups, bits, threads=1 + done % 3, kernel=kernel),
                         reference(x, wt, bias, stride, padding, groups, bits))


@pytest.mark.parametrize("bits", [1, 2, 8, 16, 24, 40, 52])
def test_activation_bits(bits):
    """Every grid fineness rounds as torch.round does (weights on the grid of the same bits)."""
    x, _, bias = spread_case(bits, 2, 6, 9, 10, 5, 3)
    wt = weight_grid(torch.randn(5, 6, 3, 3, generator=torch.Generator().manual_seed(bits)), bits)
    for kernel in KERNELS:
        assert_same_bits(ours(x, wt, bias, 1, 1, 1, bits, kernel=kernel), reference(x, wt, bias, 1, 1, 1, bits))
        dw = weight_grid(torch.randn(6, 1, 3, 3, generator=torch.Generator().manual_seed(bits)), bits)
        assert_same_bits(ours(x, dw, None, 1, 1, 6, bits, kernel=kernel), reference(x, dw, None, 1, 1, 6, bits))


def test_rounding_ties_go_to_even():
    """Halfway values: x * 2 ** (bits - e) = k + 1/2 rounds to the even neighbour, as torch.round."""
    bits = 4
    x = torch.tensor([8.0, 0.25, 0.75, 1.25, -0.25, -0.75, 2.5, -3.5, 0.5 + 2**-40], dtype=torch.float64)
    x = x.view(1, 1, 1, -1)  # largest 8: e = 4, grid 2 ** (4 - 4) = 1 ... then 0.25 -> 0
    one = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    for kernel in KERNELS:
        out = ours(x, one, None, 1, 0, 1, bits, kernel=kernel)
        assert out.flatten().tolist() == [8.0, 0.0, 1.0, 1.0, 0.0, -1.0, 2.0, -4.0, 1.0]
        assert_same_bits(out, reference(x, one, None, 1, 0, 1, bits))


@pytest.mark.parametrize("scale", [10.0 ** k for k in range(-30, 31, 5)] + [2.0 ** -100, 2.0 ** 100],
                         ids=lambda s: f"{s:.0e}")
def test_magnitudes_of_real_activations(scale):
    """Activations anywhere in [1e-30, 1e30] (and a little beyond): the kernel matches the
    reference, with its powers of two built exactly and written as 2.0 ** k alike."""
    x, wt, bias = spread_case(7, 2, 8, 9, 10, 6, 3, 1, -2.0, 2.0)
    x = x * scale
    ref = reference(x, wt, bias, 1, 1)
    assert_same_bits(ref, reference(x, wt, bias, 1, 1, literal=True))
    for kernel in KERNELS:
        assert_same_bits(ours(x, wt, bias, 1, 1, kernel=kernel), ref)
        xd, wd, bd = x[:, :6], wt[:6, :1], bias[:6]
        assert_same_bits(ours(xd, wd, bd, 1, 1, 6, kernel=kernel), reference(xd, wd, bd, 1, 1, 6))


def ideal_grid(x: np.ndarray, bits: int) -> np.ndarray:
    """x on its per-sample grid, computed with exact scalings (numpy.ldexp) for any exponent."""
    out = np.empty_like(x)
    for i, sample in enumerate(x):
        _, e = np.frexp(np.abs(sample).max())
        with np.errstate(over="ignore"):  # rounding up to 2 ** 1024 at the very top: inf, as in torch
            out[i] = np.ldexp(np.round(np.ldexp(sample, bits - int(e))), int(e) - bits)
    return out


@pytest.mark.parametrize("bits", [1, 24, 52])
@pytest.mark.parametrize("scale", [1e-300, 1e-310, 5e-324, 1e300, 2.0 ** 1022, np.finfo(np.float64).max],
                         ids=["1e-300", "subnormal", "smallest", "1e300", "2**1022", "max"])
def test_extreme_magnitudes_are_rounded_exactly(scale, bits):
    """Down to the subnormals and up to overflow (beyond where the reference's 2 ** k is a normal
    float64), the grid is x rounded at 2 ** (e - bits), exactly: checked through a 1x1 depthwise
    convolution by 1 (out = +0 + 1 * xq, so xq bit for bit, but for the sign of zeros) and a 1x1
    identity convolution. (At the very top, rounding up to 2 ** 1024 gives an infinity, as it does
    in torch.)"""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 5, 7)) * np.logspace(0, -3, 3).reshape(1, 3, 1, 1)
    x = np.clip(x * 0.5, -1.0, 1.0) * scale
    x[1] *= 0.5 ** 20
    every_fifth = x.reshape(-1)[::5]
    every_fifth[:] = scale * 0.75 ** np.arange(every_fifth.size)
    expected = ideal_grid(x, bits) + 0.0
    ones = np.ones((3, 1, 1, 1))
    identity = np.eye(3).reshape(3, 3, 1, 1)
    for kernel in KERNELS:
        for threads in (1, 2):
            for weight, groups in ((ones, 3), (identity, 1)):
                if groups == 1 and not np.isfinite(expected).all():
                    continue  # 0 * inf: the identity convolution is NaN where another channel is infinite
                out = _exact.conv2d(x, weight, None, 1, 0, groups, bits, threads, kernel=kernel)
                assert np.array_equal(out.view(np.int64), expected.view(np.int64))


def test_extreme_magnitudes_full_convolution():
    """At 1e-300 and 1e300 (the grids' powers of two still normal) whole convolutions match the
    reference bit for bit: products and sums stay in range."""
    for scale in (1e-300, 1e300):
        x, wt, bias = spread_case(5, 2, 6, 8, 9, 6, 3)
        x = x * scale
        for kernel in KERNELS:
            assert_same_bits(ours(x, wt, None, 1, 1, kernel=kernel), reference(x, wt, None, 1, 1))
            assert_same_bits(ours(x, wt[:, :1], None, 1, 1, 6, kernel=kernel), reference(x, wt[:, :1], None, 1, 1, 6))


@pytest.mark.parametrize("groups", [1, 4])
def test_zero_inputs(groups):
    """An all-zero sample (frexp's exponent 0) gives +0 everywhere, whatever the weights' signs,
    and exactly the bias with one; a zero sample beside a non-zero one keeps its own grid."""
    x = torch.zeros(2, 4, 6, 7, dtype=torch.float64)
    x[1] = torch.randn(4, 6, 7, dtype=torch.float64)
    x[0, 1, 2, 3] = -0.0
    wt = -weight_grid(torch.rand(4, 4 // groups, 3, 3) + 0.1)   # all negative: products -0
    bias = torch.tensor([1.5, -0.0, 0.0, -2.25], dtype=torch.float64)
    for kernel in KERNELS:
        for b in (None, bias):
            out = ours(x, wt, b, 1, 1, groups, kernel=kernel)
            assert_same_bits(out, reference(x, wt, b, 1, 1, groups))
            expected = torch.zeros_like(out[0]) if b is None else b.view(-1, 1, 1).expand_as(out[0]) + 0.0
            assert_same_bits(out[0], expected)
        out = ours(torch.zeros(1, 4, 3, 3, dtype=torch.float64), wt, None, 2, 1, groups, kernel=kernel)
        assert not out.signbit().any() and not out.any()


@pytest.mark.parametrize("groups", [1, 3, 6])
@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_do_not_crash(bad_value, groups):
    """A NaN or an infinity in a sample: no crash, no hang; the outputs that read it are NaN or
    infinite, as the reference's; the sample is rounded as torch rounds it (frexp's exponent 0), so
    its other outputs are finite and close to the reference's (not bit for bit: the grid no longer
    bounds the sums); the other samples are untouched and exact."""
    x, wt, bias = spread_case(13, 2, 6, 12, 14, 6, 3, groups)
    x[0, 2, 5, 6] = bad_value
    per_group = 6 // groups
    reads_it = torch.zeros(6, 12, 14, dtype=torch.bool)
    for o in range(6):
        if o // per_group == 2 // per_group:  # the output channels of the bad input channel's group
            reads_it[o, 4:7, 5:8] = True
    ref = reference(x, wt, bias, 1, 1, groups)
    for kernel in KERNELS:
        for threads in (1, 2):
            out = ours(x, wt, bias, 1, 1, groups, threads=threads, kernel=kernel)
            assert_same_bits(out[1], ref[1])
            assert torch.equal(torch.isfinite(out[0]), ~reads_it)
            assert torch.equal(torch.isnan(out[0]), torch.isnan(ref[0]))
            assert torch.equal(out[0][reads_it].nan_to_num(0.0), ref[0][reads_it].nan_to_num(0.0))  # the infinities
            assert torch.allclose(out[0][~reads_it], ref[0][~reads_it], rtol=1e-12,
                                  atol=1e-12 * ref[0][~reads_it].abs().max().item())
    nan_everywhere = torch.full((1, 6, 5, 5), math.nan, dtype=torch.float64)
    assert torch.isnan(ours(nan_everywhere, wt, bias, 2, 1, groups)).all()


@pytest.mark.parametrize("bad_value", [math.nan, math.inf])
@pytest.mark.parametrize("where", [0, -1], ids=["first", "last"])
def test_non_finite_input_found_by_every_thread(bad_value, where):
    """The maxima pass is cut between threads (pieces of a sample): a bad value in any piece counts."""
    x, wt, bias = spread_case(17, 1, 8, 300, 310, 8, 3, 8)
    x.view(-1)[where] = bad_value
    for threads in (1, 2, 3):
        out = ours(x, wt, bias, 1, 1, 8, threads=threads)
        assert (~torch.isfinite(out)).sum() == 4 and torch.equal(torch.isnan(out), torch.isnan(out))
        ref = reference(x, wt, bias, 1, 1, 8)
        assert torch.equal(torch.isfinite(out), torch.isfinite(ref))
        finite_out, finite_ref = out.nan_to_num(0.0, 0.0, 0.0), ref.nan_to_num(0.0, 0.0, 0.0)
        assert torch.allclose(finite_out, finite_ref, rtol=1e-12, atol=1e-12 * finite_ref.abs().max().item())


# --- the sums alone (activation_bits=None): inputs already on grids -------------------------------

def grid_case(seed: int, n: int, c: int, h: int, w: int, o: int, kh: int, kw: int):
    """float64 input [n, c, h, w] and weight [o, c, kh, kw] within the exactness bound: integers
    times a power of two per sample (input) and per output channel (weight)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**20, 2**20, size=(n, c, h, w), endpoint=True).astype(np.float64)
    x *= np.exp2(rng.integers(-30, 10, size=(n, 1, 1, 1)))
    per_channel = 2**30 // (c * kh * kw)
    wt = rng.integers(-per_channel, per_channel, size=(o, c, kh, kw), endpoint=True).astype(np.float64)
    wt *= np.exp2(rng.integers(-40, 5, size=(o, 1, 1, 1)))
    assert np.abs(wt).reshape(o, -1).sum(1).max() <= 2**30 * np.exp2(5)
    return x, wt


def assert_sums_match_torch(x: np.ndarray, wt: np.ndarray, stride: int, padding, threads: int = 1,
                            kernel: str = "auto") -> None:
    out = _exact.conv2d(x, wt, None, stride, padding, 1, None, threads, kernel=kernel)
    ref = F.conv2d(torch.from_numpy(np.array(x)), torch.from_numpy(np.array(wt)), None, stride, padding)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    assert_same_bits(torch.from_numpy(out), ref)


# (n, c, h, w, o, k, stride, padding): the kernel sizes and strides of the models, channel counts
# on and off the 4-channel tiles, sizes below / around / above the 12-column tiles.
SUM_CASES = [
    (1, 3, 17, 23, 8, 3, 1, 1),
    (2, 2, 5, 3, 3, 3, 1, 1),
    (1, 8, 1, 1, 8, 3, 1, 1),
    (1, 13, 9, 14, 13, 3, 1, 1),
    (2, 48, 20, 31, 48, 3, 1, 1),
    (1, 64, 12, 70, 64, 3, 1, 1),
    (1, 96, 9, 25, 96, 3, 2, 1),
    (1, 128, 7, 13, 128, 3, 1, 1),
    (1, 256, 6, 9, 256, 3, 1, 1),          # several input-channel chunks, accumulated
    (1, 3, 33, 41, 128, 3, 2, 1),          # the I-frame input layer
    (2, 13, 21, 18, 7, 3, 2, 0),
    (1, 8, 4, 4, 5, 3, 2, 3),
    (1, 32, 15, 19, 64, 7, 1, 3),
    (1, 3, 8, 70, 2, 7, 1, 0),
    (2, 5, 10, 12, 9, 7, 1, 2),
    (1, 16, 16, 18, 32, 2, 2, 0),          # 2x2 stride-2 downsampling
    (2, 13, 7, 9, 3, 2, 2, 1),
    (1, 64, 24, 40, 64, 1, 1, 0),          # 1x1: one long row per channel
    (2, 256, 6, 13, 256, 1, 1, 0),
    (1, 96, 5, 7, 48, 1, 1, 0),            # 35 columns: a partial last vector
    (2, 3, 1, 1, 13, 1, 1, 0),
    (1, 8, 9, 9, 8, 1, 1, 1),              # 1x1 with padding
    (1, 13, 11, 11, 8, 1, 2, 0),           # 1x1 stride 2
    (1, 2, 1, 1, 3, 2, 1, 1),
    (1, 48, 3, 2, 48, 3, 1, 2),
]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", SUM_CASES, ids=lambda c: "n{}c{}_{}x{}_o{}_k{}s{}p{}".format(*c))
def test_sums_bit_for_bit(case, kernel):
    n, c, h, w, o, k, stride, padding = case
    x, wt = grid_case(hash(case) % 2**32, n, c, h, w, o, k, k)
    assert_sums_match_torch(x, wt, stride, (padding, padding), threads=1, kernel=kernel)


def test_sums_random_shapes_bit_for_bit():
    """Random geometries: sizes 1..70, channels 1..40, kernels 1..7 (square and not), strides,
    paddings 0..3, batches, 1..3 threads, both kernels."""
    for done, (rng, kh, kw, stride, padding, h, w) in enumerate(random_geometries(1, 120, 70)):
        n, c, o = int(rng.integers(1, 3)), int(rng.integers(1, 41)), int(rng.integers(1, 41))
        x, wt = grid_case(done, n, c, h, w, o, kh, kw)
        kernel = KERNELS[done % len(KERNELS)]
        assert_sums_match_torch(x, wt, stride, padding, threads=1 + done % 3, kernel=kernel)


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7])
def test_sums_threads_bit_for_bit(threads):
    """Every split of the work (row bands, column slices, output-channel splits) gives the same
    bits."""
    for case in [(1, 48, 30, 45, 48, 3, 1, 1),     # row bands
                 (2, 32, 40, 40, 64, 3, 2, 1),     # bands of both samples
                 (1, 64, 40, 64, 64, 1, 1, 0),     # slices of a 1x1's long row
                 (1, 64, 2, 40, 256, 3, 1, 1),     # 2 rows: output-channel splits
                 (3, 8, 30, 30, 16, 7, 1, 3)]:
        n, c, h, w, o, k, stride, padding = case
        x, wt = grid_case(threads, n, c, h, w, o, k, k)
        assert_sums_match_torch(x, wt, stride, padding, threads=threads)


def test_grid_inputs_are_left_as_they_are():
    """On-grid inputs with at most 21 significant bits below their sample's top: rounding at 24
    bits changes nothing, so activation_bits=24 and None agree."""
    x, wt = grid_case(4, 2, 6, 9, 11, 5, 3, 3)
    assert np.array_equal(_exact.conv2d(x, wt, None, 1, 1, 1, 24), _exact.conv2d(x, wt, None, 1, 1, 1, None))


@pytest.mark.parametrize("stride", [1, 2])
def test_narrow_inputs_every_padding(stride):
    """Every small width and height with every padding up to 3 and kernel up to 4 wide: the edges
    of the padded copy (and of its even / odd planes for stride 2), rounded and not."""
    for size in range(1, 10):
        for pad in range(4):
            for k in range(1, 5):
                if size + 2 * pad < k:
                    continue
                x, wt = grid_case(size * 100 + pad * 10 + k, 1, 2, size, size + 1, 3, k, k)
                assert_sums_match_torch(x, wt, stride, (pad, pad))
                xs, ws, bias = spread_case(size * 100 + pad * 10 + k, 1, 2, size, size + 1, 3, k)
                assert_same_bits(ours(xs, ws, bias, stride, pad, kernel=KERNELS[-1]),
                                 reference(xs, ws, bias, stride, pad))
                if size + 1 + 2 * (3 - pad) >= k:
                    assert_sums_match_torch(x, wt, stride, (pad, 3 - pad), kernel=KERNELS[-1])
                    assert_same_bits(ours(xs, ws, None, stride, (pad, 3 - pad)),
                                     reference(xs, ws, None, stride, (pad, 3 - pad)))


# --- the API ------------------------------------------------------------------------------------

def test_padding_forms_and_asymmetric_padding():
    x, wt = grid_case(5, 1, 4, 9, 11, 6, 3, 3)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), None, 1, 2).numpy()
    for padding in (2, (2, 2), [2, 2], np.int64(2)):
        assert np.array_equal(_exact.conv2d(x, wt, None, 1, padding, 1, None, 1), ref)
    assert_sums_match_torch(x, wt, 2, (0, 3))
    assert_sums_match_torch(x, wt, 1, (3, 0))


def test_keywords_and_defaults():
    """groups=1, activation_bits=24, threads=1 by default; every argument by keyword too."""
    x, wt, bias = spread_case(9, 1, 4, 6, 7, 4, 3)
    ref = reference(x, wt, bias, 1, 1)
    xn, wn, bn = x.numpy(), wt.numpy(), bias.numpy()
    assert_same_bits(torch.from_numpy(_exact.conv2d(xn, wn, bn, 1, 1)), ref)
    assert_same_bits(torch.from_numpy(_exact.conv2d(input=xn, weight=wn, bias=bn, stride=1, padding=(1, 1), groups=1,
                                                    activation_bits=24, threads=2, kernel="auto")), ref)


def test_inputs_unchanged_and_views_accepted():
    x, wt, bias = spread_case(6, 2, 6, 12, 12, 5, 3)
    xn, wn, bn = x.numpy(), wt.numpy(), bias.numpy()
    x0, w0, b0 = xn.copy(), wn.copy(), bn.copy()
    _exact.conv2d(xn, wn, bn, 1, 1, 1, 24, 2)
    assert np.array_equal(x0, xn) and np.array_equal(w0, wn) and np.array_equal(b0, bn)
    # C-contiguous views (one sample of a batch, a slice of a bias) and read-only arrays are fine.
    assert_same_bits(torch.from_numpy(_exact.conv2d(xn[1:], wn, bn, 1, 1)), reference(x[1:], wt, bias, 1, 1))
    long_bias = np.concatenate([bn, bn])
    assert np.array_equal(_exact.conv2d(xn, wn, long_bias[:5], 1, 1), _exact.conv2d(xn, wn, bn, 1, 1))
    for array in (xn, wn, bn):
        array.setflags(write=False)
    assert_same_bits(torch.from_numpy(_exact.conv2d(xn, wn, bn, 2, 1)), reference(x, wt, bias, 2, 1))


def test_kernel_names():
    assert _exact.isa() in ("avx2", "generic")
    assert _exact.MAX_ACTIVATION_BITS == 52
    x, wt, bias = spread_case(8, 1, 3, 5, 5, 2, 3)
    xn, wn, bn = x.numpy(), wt.numpy(), bias.numpy()
    assert np.array_equal(_exact.conv2d(xn, wn, bn, 1, 1, kernel="generic"), _exact.conv2d(xn, wn, bn, 1, 1))
    with pytest.raises(ValueError, match="kernel must be"):
        _exact.conv2d(xn, wn, bn, 1, 1, kernel="sse")


def _good():
    return np.zeros((1, 6, 8, 8)), np.zeros((4, 6, 3, 3)), np.zeros(4)


@pytest.mark.parametrize("make, error, message", [
    (lambda x, w, b: (x.astype(np.float32), w, b, 1, 1), TypeError, "input must have dtype float64"),
    (lambda x, w, b: (x, w.astype(np.int64), b, 1, 1), TypeError, "weight must have dtype float64"),
    (lambda x, w, b: (x, w, b.astype(np.float32), 1, 1), TypeError, "bias must have dtype float64"),
    (lambda x, w, b: (x.astype(">f8"), w, b, 1, 1), TypeError, "input must have dtype float64"),
    (lambda x, w, b: (torch.from_numpy(x), w, b, 1, 1), TypeError, "numpy.ndarray"),
    (lambda x, w, b: (x, w, torch.from_numpy(b), 1, 1), TypeError, "bias must be None or a numpy.ndarray"),
    (lambda x, w, b: (x, w, b.tolist(), 1, 1), TypeError, "bias must be None or a numpy.ndarray"),
    (lambda x, w, b: (x, w, 0.0, 1, 1), TypeError, "bias must be None or a numpy.ndarray"),
    (lambda x, w, b: (x.tolist(), w, b, 1, 1), TypeError, "numpy.ndarray"),
    (lambda x, w, b: (None, w, b, 1, 1), TypeError, "numpy.ndarray"),
    (lambda x, w, b: (x[0], w, b, 1, 1), ValueError, "input must be 4-D"),
    (lambda x, w, b: (x, w[..., None], b, 1, 1), ValueError, "weight must be 4-D"),
    (lambda x, w, b: (x, w, b[None], 1, 1), ValueError, "bias must be 1-D"),
    (lambda x, w, b: (x, w, b[:3], 1, 1), ValueError, "bias must have shape (4,)"),
    (lambda x, w, b: (x, w, np.zeros(5), 1, 1), ValueError, "bias must have shape (4,)"),
    (lambda x, w, b: (x, w, np.zeros(8)[::2], 1, 1), ValueError, "bias must be C-contiguous"),
    (lambda x, w, b: (x[..., ::2], w, b, 1, 1), ValueError, "C-contiguous"),
    (lambda x, w, b: (np.asfortranarray(x), w, b, 1, 1), ValueError, "C-contiguous"),
    (lambda x, w, b: (x, w[:, :2].copy(), b, 1, 1), ValueError, "input channels"),
    (lambda x, w, b: (x, w, b, 1, 1, 2), ValueError, "input channels per group"),
    (lambda x, w, b: (x, w[:, :4].copy(), b, 1, 1, 2), ValueError, "input channels per group"),
    (lambda x, w, b: (x, w[:, :1].copy(), b, 1, 1, 4), ValueError, "groups (4) must divide"),
    (lambda x, w, b: (x, w[:, :1].copy(), b, 1, 1, 5), ValueError, "groups (5) must divide"),
    (lambda x, w, b: (x, w[:3, :2].copy(), b[:3], 1, 1, 2), ValueError, "groups (2) must divide"),
    (lambda x, w, b: (x, w, b, 1, 1, 0), ValueError, "groups must be positive"),
    (lambda x, w, b: (x, w, b, 1, 1, -1), ValueError, "groups must be positive"),
    (lambda x, w, b: (x, w, b, 1, 1, 1.0), TypeError, "groups must be an int"),
    (lambda x, w, b: (x, w, b, 1, 1, None), TypeError, "groups must be an int"),
    (lambda x, w, b: (x[:, :0], w[:, :0], b, 1, 1), ValueError, "positive sizes"),
    (lambda x, w, b: (x[:0], w, b, 1, 1), ValueError, "positive sizes"),
    (lambda x, w, b: (x, w[:0], b[:0], 1, 1), ValueError, "positive sizes"),
    (lambda x, w, b: (x, w, b, 0, 1), ValueError, "stride must be 1 or 2"),
    (lambda x, w, b: (x, w, b, 3, 1), ValueError, "stride must be 1 or 2"),
    (lambda x, w, b: (x, w, b, -1, 1), ValueError, "stride must be 1 or 2"),
    (lambda x, w, b: (x, w, b, 2**70, 1), ValueError, "out of range"),
    (lambda x, w, b: (x, w, b, 1.0, 1), TypeError, "stride must be an int"),
    (lambda x, w, b: (x, w, b, True, 1), TypeError, "stride must be an int"),
    (lambda x, w, b: (x, w, b, (1, 1), 1), TypeError, "stride must be an int"),
    (lambda x, w, b: (x, w, b, 1, -1), ValueError, "padding must be in"),
    (lambda x, w, b: (x, w, b, 1, (0, -2)), ValueError, "padding must be in"),
    (lambda x, w, b: (x, w, b, 1, 2**20), ValueError, "padding must be in"),
    (lambda x, w, b: (x, w, b, 1, (1, 1, 1)), ValueError, "pair"),
    (lambda x, w, b: (x, w, b, 1, "1"), TypeError, "padding must be an int or a pair"),
    (lambda x, w, b: (x, w, b, 1, (1.5, 1)), TypeError, "padding[0] must be an int"),
    (lambda x, w, b: (x, w, b, 1, None), TypeError, "padding must be an int or a pair"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, 0), ValueError, "activation_bits must be in 1..52 or None"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, 53), ValueError, "activation_bits must be in 1..52 or None"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, -24), ValueError, "activation_bits must be in 1..52 or None"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, 2**64), ValueError, "out of range"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, 24.0), TypeError, "activation_bits must be an int"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, True), TypeError, "activation_bits must be an int"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, 24, 0), ValueError, "threads must be in 1..256"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, 24, 257), ValueError, "threads must be in 1..256"),
    (lambda x, w, b: (x, w, b, 1, 1, 1, 24, 2.0), TypeError, "threads must be an int"),
    (lambda x, w, b: (x[:, :, :2].copy(), w, b, 1, 0), ValueError, "larger than the padded input"),
    (lambda x, w, b: (x[:, :, :, :1].copy(), w, b, 2, 0), ValueError, "larger than the padded input"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments(make, error, message):
    x, w, b = _good()
    with pytest.raises(error, match=message.replace("[", r"\[").replace(".", r"\.").replace("(", r"\(")
                       .replace(")", r"\)")):
        _exact.conv2d(*make(x, w, b))


def test_missing_arguments_are_a_type_error():
    x, w, b = _good()
    with pytest.raises(TypeError):
        _exact.conv2d(x, w, b)
    with pytest.raises(TypeError):
        _exact.conv2d(x, w, b, 1, 1, 1, 24, 1, "auto")  # kernel is keyword-only


def test_unaligned_array_rejected():
    raw = np.zeros(6 * 8 * 8 * 8 + 1, dtype=np.uint8)
    x = np.frombuffer(raw.data, dtype=np.float64, count=6 * 8 * 8, offset=1).reshape(1, 6, 8, 8)
    assert not x.flags.aligned
    with pytest.raises(ValueError, match="aligned"):
        _exact.conv2d(x, np.zeros((4, 6, 3, 3)), None, 1, 1)
