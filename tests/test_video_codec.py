"""VideoCodec (sevc.codec.video) over a short clip with stand-in weights: the decoder reproduces the
encoder's full and skim reconstructions, skim decoding and fast streams give the base layer alone,
and the test path gives one result per frame."""
from __future__ import annotations

import pytest
import torch

from sevc.codec.video import VideoCodec
from sevc.models import Rate
from sevc.numerics import Numerics, Precision
from sevc.weights import stand_in_models

RATE = Rate.level(32)


@pytest.fixture(scope="module")
def codec():
    return VideoCodec(*stand_in_models(0))


@pytest.fixture(scope="module")
def frames():
    torch.manual_seed(0)
    base = torch.rand(1, 3, 72, 88)
    return [(base + 0.02 * k).clamp(0, 1) for k in range(3)]


def test_the_decoder_reproduces_the_encoder(codec, frames):
    encoded = list(codec.encode(frames, rate=RATE))
    decoded = list(codec.decode([e.payloads for e in encoded], 72, 88, rate=RATE))
    assert [e.intra for e in encoded] == [True, False, False] == [d.intra for d in decoded]
    assert [len(e.payloads) for e in encoded] == [1, 2, 2]
    for e, d in zip(encoded, decoded):
        assert torch.equal(e.full, d.full) and torch.equal(e.skim, d.skim)
        assert d.full.shape[2:] == (72, 88) and d.skim.shape[2:] == (18, 22)


def test_skim_decoding_reads_the_base_layer_alone(codec, frames):
    encoded = list(codec.encode(frames, rate=RATE))
    skimmed = list(codec.decode([e.payloads for e in encoded], 72, 88, rate=RATE, skim=True))
    assert all(d.full is None for d in skimmed)
    assert all(torch.equal(e.skim, d.skim) for e, d in zip(encoded, skimmed))


def test_a_fast_stream_holds_the_base_layer_alone(codec, frames):
    encoded = list(codec.encode(frames, rate=RATE, fast=True))
    assert [len(e.payloads) for e in encoded] == [1, 1, 1] and all(e.full is None for e in encoded)
    decoded = list(codec.decode([e.payloads for e in encoded], 72, 88, rate=RATE, fast=True))
    assert all(torch.equal(e.skim, d.skim) for e, d in zip(encoded, decoded))


def test_the_test_path_gives_one_result_per_frame(codec, frames):
    results = list(codec.evaluate(frames, i_rate=RATE))
    assert [r.intra for r in results] == [True, False, False]
    assert all(r.recon.shape == frames[0].shape and r.bits.item() > 0 for r in results)
    assert all(0 <= r.recon.min() and r.recon.max() <= 1 for r in results)


def test_a_precision_applies_to_float_numerics_only():
    with pytest.raises(ValueError, match="precision applies to float numerics"):
        VideoCodec(*stand_in_models(0), numerics=Numerics.INTEGER, precision=Precision.BF16)
