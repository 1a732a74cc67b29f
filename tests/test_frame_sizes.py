"""Frame sizes the published code crashes on work too: encode, decode, sizes, decoder == encoder."""
from __future__ import annotations

import pytest
import torch

from sevc.models.intra import IntraNoAR
from sevc.models.sevc import SEVC
from sevc.codec.video import VideoCodec
from sevc.models.rate import Rate


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    i_frame, p_frame = IntraNoAR(), SEVC()
    i_frame.eval().update(force=True)
    p_frame.eval().update(force=True)
    return VideoCodec(i_frame, p_frame)


@pytest.mark.parametrize("height,width", [(120, 200), (98, 130)])
@pytest.mark.parametrize("fast", [False, True])
def test_unsupported_by_published_sizes_round_trip(codec, height, width, fast):
    torch.manual_seed(height)
    base = torch.rand(1, 3, height, width)
    frames = [base, base.roll(2, dims=3), base.roll(4, dims=3)]
    coded = list(codec.encode(frames, rate=Rate.level(30), fast=fast))
    decoded = list(codec.decode([f.payloads for f in coded], height, width, rate=Rate.level(30), fast=fast))
    for enc, dec in zip(coded, decoded):
        assert dec.skim.shape == (1, 3, height // 4, width // 4)
        assert torch.equal(dec.skim, enc.skim)
        if not fast:
            assert dec.full.shape == (1, 3, height, width)
            assert torch.equal(dec.full, enc.full)
    evaluated = list(codec.evaluate(frames, i_rate=Rate.of_anchor(1)))
    assert all(r.recon.shape == (1, 3, height, width) and r.bits > 0 for r in evaluated)
