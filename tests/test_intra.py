"""The I-frame codec equals the published DCVC-DC intra model on the reference fixtures."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sevc.models.intra import IntraNoAR
from sevc.models.rate import Rate
from sevc.nn.padding import crop

from conftest import assert_close, assert_rel_close, case_frames, stand_in_model
from reference import CASES, FIXTURES, ModuleRecords, case_info, codec_rate, manifest, path_rate


def intra_model(seed: int) -> IntraNoAR:
    return stand_in_model(IntraNoAR(), "i_frame", seed)


def test_state_dict_keys_and_shapes_match_official_checkpoint():
    ours = [(k, list(v.shape)) for k, v in IntraNoAR().state_dict().items()]
    assert ours == [(k, shape) for k, shape, _ in manifest("i_frame")]


MODULES = {"enc": "enc", "hyper_enc": "hyperprior.encoder", "hyper_dec": "hyperprior.decoder",
           "y_prior_fusion": "y_prior_fusion", "dec": "dec", "refine": "refine"}  # checkpoint name: submodule


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_outputs_match_recorded(module):
    recorded = ModuleRecords()
    prefix = f"i_frame.{module}@f0/"
    inputs = [torch.from_numpy(recorded[f"{prefix}in{i}"]) for i in range(2) if f"{prefix}in{i}" in recorded]
    with torch.no_grad():
        out = intra_model(case_info("case_a")["seed"]).get_submodule(MODULES[module])(*inputs)
    assert_close(out, recorded[prefix + "out0"])


@pytest.mark.parametrize("case", CASES)
def test_first_frame_test_path(case):
    info = case_info(case)
    x = case_frames(case)[0]
    h, w = x.shape[2:]
    with torch.no_grad():
        result = intra_model(info["seed"])(IntraNoAR.pad_frame(x), rate=path_rate(info))
    assert_rel_close(result.bits.item(), info["test_path"]["bits"][0])
    recon = crop(result.state.clamp(0, 1), h, w)[0]
    assert_close(recon, np.load(FIXTURES / case / "test_path_recon.npy")[0])


@pytest.mark.parametrize("case", CASES)
def test_first_frame_codec_path(case):
    info = case_info(case)
    x = case_frames(case)[0]
    h, w = x.shape[2:]
    model = intra_model(info["seed"])
    model.update(force=True)
    with torch.no_grad():
        encoded = model.compress(IntraNoAR.pad_frame(x), rate=codec_rate(info))
        expected = (FIXTURES / case / "full" / "frame000_part0.bin").read_bytes()
        assert encoded.payloads == (expected,)
        assert hashlib.sha256(expected).hexdigest() == info["full"]["payload_sha256"][0][0]
        decoded = model.decompress(expected, h, w, rate=codec_rate(info))
    assert torch.equal(decoded, encoded.state)
    assert_close(crop(decoded, h, w)[0], np.load(FIXTURES / case / "full" / "decoded_full.npy")[0])


def test_q_index_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="out of range 0..63"):
        Rate.level(64)
    with pytest.raises(ValueError, match="out of range 0..3"):
        IntraNoAR().q_scales("", Rate.of_anchor(4))
