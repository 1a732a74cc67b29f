"""Bicubic resize: sizes and basic properties (its exactness is proven by the P-frame fixtures)."""
from __future__ import annotations

import pytest
import torch

from sevc.nn.resample import imresize


@pytest.mark.parametrize("h,w", [(64, 64), (144, 176), (120, 248), (67, 93)])
def test_output_size_and_constant_preserved(h, w):
    x = torch.full((2, 3, h, w), 0.37)
    y = imresize(x, 0.25)
    assert y.shape == (2, 3, -(-h // 4), -(-w // 4))
    assert torch.allclose(y, torch.full_like(y, 0.37), atol=1e-6)


def test_downsampling_averages_a_ramp():
    ramp = torch.arange(64, dtype=torch.float32).repeat(64, 1)[None, None]
    y = imresize(ramp, 0.25)[0, 0, 8]
    # interior samples sit at the centres of 4-pixel blocks: 1.5, 5.5, ...
    assert torch.allclose(y[2:-2], torch.arange(2, 14) * 4 + 1.5, atol=1e-4)
