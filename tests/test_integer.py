"""Integer numerics: the definition of its convolution, every CPU kernel and the int8 matrix-product
path (the GPUs') equal to it bit for bit, the bounds that keep the integer sums exact, and the
models' layers under every kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sevc import _exact
from sevc.numerics import Numerics, integer, use_numerics

from conftest import fresh_models

KERNELS = _exact.integer_isas()
SHAPES = [  # (input channels, output channels, kernel, stride, height, width, groups)
    (8, 6, 3, 1, 17, 23, 1), (16, 32, 2, 2, 20, 20, 1), (3, 64, 3, 2, 33, 31, 1), (32, 8, 1, 1, 9, 9, 1),
    (64, 80, 3, 1, 24, 40, 1), (48, 48, 3, 1, 30, 30, 48), (96, 48, 1, 1, 20, 20, 16), (5, 7, 5, 2, 11, 13, 1),
    (300, 3, 3, 1, 5, 5, 1), (2, 2, 1, 1, 1, 1, 1), (4, 4, 3, 2, 3, 3, 2), (7, 5, 3, 2, 64, 70, 1),
    (16, 16, 3, 2, 19, 21, 16), (8, 8, 5, 1, 9, 40, 8), (128, 96, 3, 2, 17, 37, 1),
]


def _case(cin, cout, kernel, stride, height, width, groups, seed=0):
    """Input spread over six decades across channels (one sample holding a huge value), weights, bias."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cin, height, width, generator=g) * torch.logspace(-3, 3, cin).view(1, -1, 1, 1)
    x[1, 0, 0, 0] = 3e30
    w = torch.randn(cout, cin // groups, kernel, kernel, generator=g) / (cin // groups * kernel * kernel) ** 0.5
    return x, w, torch.randn(cout, generator=g)


def _cpu(x, w, bias, stride, padding, groups, threads, kernel):
    q = integer.cached_integer_weight(w)
    packed = _exact.IntegerWeight(q.q.numpy(), q.exponents.numpy(), groups, kernel)
    bias64 = None if bias is None else bias.double().numpy()
    return torch.from_numpy(_exact.integer_conv2d(x.numpy(), packed, bias64, stride, padding, threads))


def _same_bits(a, b) -> bool:
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_cpu_kernel_computes_the_definition(shape):
    cin, cout, kernel, stride, height, width, groups = shape
    x, w, bias = _case(*shape)
    for b in (bias, None):
        expected = integer.reference_conv2d(x, w, b, stride, kernel // 2, groups)
        for name in KERNELS:
            for threads in (1, 3):
                assert _same_bits(_cpu(x, w, b, stride, kernel // 2, groups, threads, name), expected), (name, threads)


def _int_mm_is_exact() -> bool:
    """Whether torch._int_mm on this CPU sums exactly (it does with VNNI or AMX; older CPUs'
    oneDNN int8 kernels may saturate): the worst case, every product -128 * -128."""
    a = torch.full((32, 256), -128, dtype=torch.int8)
    return bool((torch._int_mm(a, a.t().contiguous()) == 256 * 16384).all())


@pytest.mark.skipif(not _int_mm_is_exact(), reason="torch._int_mm is not exact on this CPU")
@pytest.mark.parametrize("shape", [s for s in SHAPES if s[6] == 1], ids=str)
def test_the_int8_matrix_product_path_computes_the_definition(shape):
    """The GPUs' path (int8 slices, torch._int_mm), run on the CPU: the same bits."""
    cin, cout, kernel, stride, height, width, _ = shape
    x, w, bias = _case(*shape)
    expected = integer.reference_conv2d(x, w, bias, stride, kernel // 2)
    assert _same_bits(integer.int8_conv2d(x, w, bias, stride, kernel // 2), expected)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[6] > 1] + [(48, 56, 3, 1, 20, 30, 1)], ids=str)
def test_the_sliced_float32_path_computes_the_definition(shape):
    """The GPUs' path of grouped and depthwise layers (float32 convolutions of byte slices, exact
    below 2 ** 24), run on the CPU with PyTorch's own direct kernels (oneDNN off): the same bits."""
    cin, cout, kernel, stride, height, width, groups = shape
    x, w, bias = _case(*shape)
    expected = integer.reference_conv2d(x, w, bias, stride, kernel // 2, groups)
    enabled = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        assert _same_bits(integer.sliced_conv2d(x, w, bias, stride, kernel // 2, groups), expected)
    finally:
        torch._C._set_mkldnn_enabled(enabled)


def test_the_definition_is_close_to_float():
    x, w, bias = _case(64, 32, 3, 1, 20, 20, 1)
    x = x[:1] * 0 + torch.randn(1, 64, 20, 20)  # an ordinary sample
    y, expected = integer.reference_conv2d(x, w, bias, 1, 1), F.conv2d(x, w, bias, 1, 1)
    assert (y - expected).abs().max() < 1e-3 * expected.abs().max()


def test_worst_case_integers_hit_the_bounds_and_stay_exact():
    """Every activation at an extreme (-32768 or 32767) and every weight at an extreme (-32768 or
    32639) with signs that make all 4096 products of a sum as large as they get: every kernel's
    int32 sums run at their limits (chunks of 127 pairs, 64 blocks of 64 taps), and the result is
    still the exact sum, far beyond int32."""
    g = torch.Generator().manual_seed(3)
    negative = torch.rand(1, 64, 8, 8, generator=g) < 0.5
    x = torch.where(negative, -1.0 + 2.0 ** -17, 1.0 - 2.0 ** -16)      # e = 0: -32767.75 and 32767.5 round
    #                                                                    to -32768 and (clamped) 32767
    q = torch.where(negative, -32768, 32639).to(torch.int16)
    a, e = integer.quantize(x)
    assert int(e) == 0 and set(a.unique().tolist()) == {-32768.0, 32767.0}
    exact_sum = int((a.double() * q.double()).sum().item())
    assert exact_sum > 2 ** 41
    expected = torch.tensor([float(exact_sum) * 2.0 ** -30], dtype=torch.float64).float()
    for name in KERNELS:
        packed = _exact.IntegerWeight(q.numpy(), torch.zeros(1, dtype=torch.int32).numpy(), 1, name)
        y = torch.from_numpy(_exact.integer_conv2d(x.numpy(), packed, None, 1, 0, 1))
        assert _same_bits(y.view(1), expected), name
    if _int_mm_is_exact():  # weights +-32639 (what weight rounding makes at most), by int8 slices
        w = torch.where(negative, -1.0, 1.0) * (32639 * 2.0 ** -15)
        assert set(integer.cached_integer_weight(w).q.unique().tolist()) == {-32639, 32639}
        assert _same_bits(integer.int8_conv2d(x, w, None), integer.reference_conv2d(x, w, None))


def test_quantization_of_zero_tiny_and_non_finite_samples():
    x = torch.zeros(5, 2, 3, 3)
    x[1, 0, 0, 0] = 1e-40                      # subnormal: the exponent is clamped, the integers 0
    x[2, 0, 0, 0], x[2, 1, 1, 1] = float("nan"), 0.75
    x[3, 0, 0, 0], x[3, 1, 1, 1] = float("inf"), -0.25
    x[4, 0, 0, 0] = 3e38                       # near float32's largest: e = 128, clamped to 100
    a, e = integer.quantize(x)
    assert e.tolist() == [0, -integer.EXPONENT_LIMIT, 0, 0, integer.EXPONENT_LIMIT]
    assert a[0].abs().sum() == 0 and a[1].abs().sum() == 0
    assert a[2, 0, 0, 0] == 0 and a[2, 1, 1, 1] == 24576          # NaN -> 0; 0.75 * 2 ** 15
    assert a[3, 0, 0, 0] == 32767 and a[3, 1, 1, 1] == -8192      # inf -> the largest
    assert a[4, 0, 0, 0] == 32767
    w = torch.randn(3, 2, 3, 3)
    expected = integer.reference_conv2d(x, w, None, 1, 1)
    for name in KERNELS:
        assert _same_bits(_cpu(x, w, None, 1, 1, 1, 1, name), expected), name


def test_weights_split_into_two_signed_bytes():
    w = torch.randn(16, 64, 3, 3) * torch.logspace(-6, 2, 16).view(-1, 1, 1, 1)
    w[3] = 0
    w[4, 0, 0, 0] = 1.0 - 2.0 ** -12           # rounds above 32639 on the grid of 2 ** -15: one bit coarser
    q = integer.cached_integer_weight(w)
    assert q.q.abs().max() <= integer.WEIGHT_LIMIT and q.q[4].abs().max() == 16380  # round(0.99976 * 2 ** 14)
    slices = integer.byte_slices(w)
    recombined = 256 * slices.high.int() + slices.low.int()
    assert torch.equal(recombined[:, :q.q[0].numel()], q.q.reshape(16, -1).int())
    with pytest.raises(ValueError, match="32639"):
        _exact.IntegerWeight(torch.full((1, 1, 1, 1), 32640, dtype=torch.int16).numpy(),
                             torch.zeros(1, dtype=torch.int32).numpy(), 1)


def test_unknown_or_unavailable_kernels_are_refused():
    w = integer.cached_integer_weight(torch.randn(2, 2, 1, 1))
    with pytest.raises(ValueError, match="must be 'generic'"):
        _exact.IntegerWeight(w.q.numpy(), w.exponents.numpy(), 1, "sse9")
    for name in {"avx2", "avx512", "amx"} - set(KERNELS):
        with pytest.raises(ValueError, match="needs a CPU"):
            _exact.IntegerWeight(w.q.numpy(), w.exponents.numpy(), 1, name)


@pytest.fixture(scope="module")
def model_layers():
    """Every convolution and linear layer the stand-in models run on a 64x64 I-frame and P-frame
    (test path, integer mode): (module, its input)."""
    from sevc import Rate, VideoCodec
    from sevc.nn.ops import Conv2d, Linear

    models = fresh_models()
    seen = []
    hooks = [module.register_forward_hook(lambda m, args, out: seen.append((m, args[0].detach())))
             for model in models for module in model.modules() if isinstance(module, (Conv2d, Linear))]
    torch.manual_seed(0)
    frames = [torch.rand(1, 3, 64, 64) for _ in range(2)]
    list(VideoCodec(*models, numerics=Numerics.INTEGER).evaluate(frames, i_rate=Rate.of_anchor(1)))
    for hook in hooks:
        hook.remove()
    return seen


def test_every_layer_of_the_models_is_the_same_under_every_kernel(model_layers, monkeypatch):
    """Layer by layer: each C++ kernel, and the int8 matrix-product path for dense layers, give the
    reference's bits on the models' own activations."""
    from sevc.nn.ops import Linear

    assert len(model_layers) > 100
    exact_int_mm = _int_mm_is_exact()
    for module, x in model_layers:
        with use_numerics(Numerics.INTEGER):
            if isinstance(module, Linear):
                x = x.reshape(x.shape[0], -1, x.shape[-1]).transpose(1, 2)[:, :, None, :]
                weight, stride, padding, groups = module.weight, 1, 0, 1
            else:
                weight, stride, padding, groups = module.weight, module.stride, module.padding, module.groups
            expected = integer.reference_conv2d(x, weight, module.bias, stride, padding, groups)
            for name in KERNELS:
                monkeypatch.setenv(integer.KERNEL_ENV, name)
                assert _same_bits(integer.conv2d(x, weight, module.bias, stride, padding, 1, groups), expected)
            if groups == 1 and exact_int_mm:
                assert _same_bits(integer.int8_conv2d(x, weight, module.bias, stride, padding), expected)


@pytest.mark.parametrize("length", [1, 2, 7, 64, 256, 1000])
def test_softmax_kernels_equal_the_definition(length):
    g = torch.Generator().manual_seed(length)
    x = torch.randn(33, length, generator=g) * torch.logspace(-2, 3, 33).view(-1, 1)
    x[0] = -3e38                      # all equal and huge
    x[1, 0] = 3e38                    # one huge
    expected = integer._softmax_torch(x)
    for kernel in {"generic", _exact.integer_math_isa()}:
        assert _same_bits(torch.from_numpy(_exact.integer_softmax(x.numpy(), 2, kernel=kernel)), expected), kernel
    assert (expected - torch.softmax(x, -1)).abs().max() < 1e-6


def test_softmax_sums_in_any_order_and_keeps_nan_rows_nan():
    """The grid makes every row's sum exact, so a permuted row gives the permuted result; a row
    holding a NaN gives NaNs (a corrupted stream), never a crash."""
    x = torch.randn(8, 300) * 30
    order = torch.randperm(300)
    assert torch.equal(integer.softmax(x)[:, order], integer.softmax(x[:, order]))
    x[3, 17] = float("nan")
    assert torch.isnan(integer.softmax(x)[3]).all() and torch.isnan(integer._softmax_torch(x)[3]).all()


@pytest.mark.parametrize("m,k,n", [(256, 16, 256), (7, 33, 5), (1, 1, 1), (40, 256, 16)])
def test_matmul_kernels_equal_the_definition(m, k, n):
    g = torch.Generator().manual_seed(m + k + n)
    a = torch.randn(3, 2, m, k, generator=g) * 4
    b = torch.randn(3, 2, k, n, generator=g) * torch.logspace(-3, 3, n)
    expected = integer.reference_matmul(a, b)
    assert (expected - a @ b).abs().max() <= 1e-3 * (a.abs() @ b.abs()).max()
    for name in KERNELS:
        out = _exact.integer_matmul(a.reshape(-1, m, k).numpy(), b.reshape(-1, k, n).numpy(), 2, name)
        assert _same_bits(torch.from_numpy(out).view(expected.shape), expected), name


def test_the_warp_kernel_equals_its_definition():
    """The explicit bilinear backward warp on float32 (integer mode's), by sevc._exact's kernel:
    the bits of its torch definition, flows far outside the frame, NaN and infinities included."""
    from sevc.nn.resample import _warp_torch

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 37, 53, generator=g) * 10
    flow = torch.randn(2, 2, 37, 53, generator=g) * torch.tensor([3.0, 60.0]).view(1, 2, 1, 1)
    flow[0, 0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30])
    expected = _warp_torch(x, flow)
    for threads in (1, 3):
        assert _same_bits(torch.from_numpy(_exact.integer_warp(x.numpy(), flow.numpy(), threads)), expected)
