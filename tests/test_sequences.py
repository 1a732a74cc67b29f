"""Whole sequences (I-frame + two-layer P-frames) equal the published SEVC scripts' outputs."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sevc.entropy.scale_table import SCALE_LEVELS, ScaleTableModel
from sevc.models.intra import IntraNoAR
from sevc.models.sevc import SEVC
from sevc.codec.schedule import FrameSchedule
from sevc.codec.video import VideoCodec

from conftest import DEVICE, assert_close, assert_rel_close, case_frames, stand_in_model
from reference import CASES, FIXTURES, case_info, codec_rate, path_rate

NEAR_TIE = 1e-4  # in scale-table steps


def video_codec(seed: int) -> VideoCodec:
    i_frame = stand_in_model(IntraNoAR(), "i_frame", seed).to(DEVICE)
    p_frame = stand_in_model(SEVC(), "p_frame", seed).to(DEVICE)
    i_frame.update(force=True)
    p_frame.update(force=True)
    return VideoCodec(i_frame, p_frame, FrameSchedule(intra_period=-1, refresh_interval=32))


@pytest.fixture(scope="module", params=CASES)
def case(request):
    info = case_info(request.param)
    return request.param, info, [x.to(DEVICE) for x in case_frames(request.param)], video_codec(info["seed"])


def test_test_path_all_frames(case):
    name, info, frames, codec = case
    expected_recon = np.load(FIXTURES / name / "test_path_recon.npy")
    results = list(codec.evaluate(frames, i_rate=path_rate(info)))
    assert [r.intra for r in results] == [True] + [False] * (len(frames) - 1)
    for k, result in enumerate(results):
        assert_rel_close(result.bits.item(), info["test_path"]["bits"][k])
        assert_close(result.recon[0], expected_recon[k])


def _round_near_ties_up(self, scales):
    """Scale-table indexes with values within NEAR_TIE below an integer rounded up."""
    scales = torch.maximum(scales, torch.zeros_like(scales) + 1e-5)
    value = (torch.log(scales) - self.log_scale_min) / self.log_scale_step
    return (value + NEAR_TIE).clamp_(0, SCALE_LEVELS - 1).int()


def _hashes(coded):
    return [[hashlib.sha256(p).hexdigest() for p in frame.payloads] for frame in coded]


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_codec_path_payloads_and_decoding(case, mode, monkeypatch):
    name, info, frames, codec = case
    fast = mode == "fast"
    h, w = info["height"], info["width"]
    coded = list(codec.encode(frames, rate=codec_rate(info), fast=fast))
    ours_decoded = list(codec.decode([f.payloads for f in coded], h, w, rate=codec_rate(info), fast=fast))
    for enc, dec in zip(coded, ours_decoded):
        assert torch.equal(dec.skim, enc.skim)
        assert fast or torch.equal(dec.full, enc.full)
    if DEVICE.type != "cpu":
        return  # the fixtures' payloads are the CPU's: float numerics is machine-bound

    expected = info[mode]["payload_sha256"]
    ours = _hashes(coded)
    if ours != expected:
        # A scale that lands within 1e-4 of a table step boundary can take the other table on
        # another CPU (float summation order); the published code on this machine gives our
        # bytes. Such a payload must then match with near-ties taken the other way.
        with monkeypatch.context() as patch:
            patch.setattr(ScaleTableModel, "indexes", _round_near_ties_up)
            other = _hashes(codec.encode(frames, rate=codec_rate(info), fast=fast))
        for k, (a, b, want) in enumerate(zip(ours, other, expected)):
            for part, (mine, near_tie, published) in enumerate(zip(a, b, want)):
                assert published in (mine, near_tie), f"frame {k} part {part}: payload differs from the published one"
    assert [len(f.payloads) for f in coded] == [len(parts) for parts in expected]

    # our decoded frames and the published payloads' equal the published decoder's
    skim = np.load(FIXTURES / name / mode / "decoded_skim.npy")
    full = np.load(FIXTURES / name / mode / "decoded_full.npy") if not fast else None
    for k, dec in enumerate(ours_decoded):
        assert_close(dec.skim[0], skim[k])
        if not fast:
            assert_close(dec.full[0], full[k])
    if ours == expected or fast:
        published = [[(FIXTURES / name / mode / f"frame{k:03d}_part{j}.bin").read_bytes() for j in range(len(parts))]
                     for k, parts in enumerate(expected)]
        decoded = list(codec.decode(published, h, w, rate=codec_rate(info), fast=fast))
        for k, dec in enumerate(decoded):
            assert_close(dec.skim[0], skim[k])


def test_skim_decoding_of_a_full_stream(case):
    name, info, frames, codec = case
    coded = list(codec.encode(frames, rate=codec_rate(info)))
    skims = list(codec.decode([f.payloads for f in coded], info["height"], info["width"], rate=codec_rate(info),
                              skim=True))
    for enc, dec in zip(coded, skims):
        assert dec.full is None
        assert torch.equal(dec.skim, enc.skim)
