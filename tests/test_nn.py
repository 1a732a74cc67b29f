"""sevc.nn: each operation is torch's own in float numerics, follows the mode in the portable ones
(float64 in portable mode, float32 in integer mode) and stays close to float there; padding,
cropping and strides; the resampling helpers."""
from __future__ import annotations

import pytest
import torch

from sevc.nn import ops
from sevc.nn.padding import crop, pad_to_multiple, padded_size, strided_size
from sevc.nn.resample import average_pool2x, downsample2x, flow_warp, upsample2x
from sevc.numerics import Numerics, use_numerics

MODES = [Numerics.PORTABLE, Numerics.INTEGER]


def modules():
    torch.manual_seed(0)
    return {"conv": ops.Conv2d(4, 6, 3, padding=1), "strided": ops.Conv2d(4, 4, 3, stride=2, padding=1),
            "grouped": ops.Conv2d(4, 4, 3, padding=1, groups=4), "linear": ops.Linear(4, 5),
            "norm": ops.LayerNorm(4), "gelu": ops.GELU()}


def operand(name: str) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 7, 3, 4) if name in ("linear", "norm", "gelu") else torch.randn(2, 4, 9, 10)


@pytest.mark.parametrize("name", sorted(modules()))
def test_float_numerics_is_torch(name):
    module, x = modules()[name], operand(name)
    reference = {"conv": torch.nn.Conv2d, "strided": torch.nn.Conv2d, "grouped": torch.nn.Conv2d,
                 "linear": torch.nn.Linear, "norm": torch.nn.LayerNorm, "gelu": torch.nn.GELU}[name]
    with torch.no_grad():
        assert torch.equal(module(x), reference.forward(module, x))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(modules()))
def test_portable_modes_follow_their_dtype_and_stay_close(name, mode):
    module, x = modules()[name], operand(name)
    with torch.no_grad():
        expected = module(x)
        with use_numerics(mode):
            got = module(x)
    assert got.dtype == mode.dtype
    assert torch.allclose(got.float(), expected, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("mode", MODES)
def test_functions_and_products_follow_the_mode(mode):
    torch.manual_seed(2)
    a, b = torch.randn(3, 5, 6), torch.randn(3, 6, 4)
    with use_numerics(mode):
        results = [ops.matmul(a, b), ops.softmax(a), ops.sigmoid(a), ops.tanh(a), ops.softplus(a)]
    expected = [a @ b, torch.softmax(a, -1), torch.sigmoid(a), torch.tanh(a), torch.nn.functional.softplus(a)]
    for got, want in zip(results, expected):
        assert got.dtype == mode.dtype and torch.allclose(got.float(), want, atol=2e-3, rtol=2e-3)


def test_padding_cropping_and_strides():
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape[2:] == padded_size(5, 7, 4) == (8, 8)
    assert torch.equal(crop(padded, 5, 7), x)
    assert torch.equal(padded[..., 7, :7], x[..., 4, :]) and torch.equal(padded[..., :5, 7], x[..., :, 6])
    assert torch.equal(pad_to_multiple(x, 4, mode="constant")[..., 5:, :], torch.zeros(1, 2, 3, 8))
    assert pad_to_multiple(x, 1) is x
    assert strided_size(65, 64, 16) == (5, 4)


@pytest.mark.parametrize("mode", MODES)
def test_resampling_in_the_portable_modes_is_float_resampling(mode):
    torch.manual_seed(3)
    x, flow = torch.randn(1, 2, 6, 8), 2 * torch.randn(1, 2, 6, 8)
    expected = [f(x) for f in (upsample2x, average_pool2x, downsample2x)] + [flow_warp(x, flow)]
    with use_numerics(mode):
        got = [f(x.to(mode.dtype)) for f in (upsample2x, average_pool2x, downsample2x)]
        got.append(flow_warp(x.to(mode.dtype), flow.to(mode.dtype)))
    for value, want in zip(got, expected):
        assert value.dtype == mode.dtype and torch.allclose(value.float(), want, atol=1e-5)


def test_resampling_keeps_flat_pictures_and_zero_motion():
    x = torch.full((1, 2, 6, 8), 0.25)
    assert torch.equal(upsample2x(x), torch.full((1, 2, 12, 16), 0.25))
    assert torch.equal(downsample2x(x), torch.full((1, 2, 3, 4), 0.25))
    y = torch.randn(1, 2, 6, 8)
    assert torch.allclose(flow_warp(y, torch.zeros(1, 2, 6, 8)), y, atol=1e-6)
