"""Checkpoint loading: wrappers, the DDP prefix, weights_only, clear errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sevc.weights.checkpoint import load_checkpoint, read_state_dict
from sevc.errors import CheckpointError


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"state_dict": sd}, lambda sd: {"net": sd},
                                  lambda sd: {f"module.{k}": v for k, v in sd.items()}])
def test_accepted_layouts(tmp_path, wrap):
    source = _model()
    path = tmp_path / "ckpt.pth.tar"
    torch.save(wrap(source.state_dict()), path)
    target = load_checkpoint(_model(), path)
    for a, b in zip(source.parameters(), target.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("zip_format", [True, False])
def test_zip_and_legacy_files_load(tmp_path, zip_format):
    source = _model()
    path = tmp_path / "ckpt.pth.tar"
    torch.save(source.state_dict(), path, _use_new_zipfile_serialization=zip_format)
    target = load_checkpoint(_model(), path)
    for a, b in zip(source.parameters(), target.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_files_are_not_checkpoints(tmp_path, zip_format):
    path = tmp_path / "ckpt.pth.tar"
    torch.save(_model().state_dict(), path, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint: not a PyTorch file, or a damaged"):
        read_state_dict(path)


def test_mismatch_names_the_keys(tmp_path):
    sd = _model().state_dict()
    sd.pop("1.bias")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"missing keys 1\.bias; unexpected keys extra\.weight"):
        load_checkpoint(_model(), path)


def test_wrong_shape_is_reported(tmp_path):
    sd = _model().state_dict()
    sd["0.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"wrong shapes for 0\.weight"):
        load_checkpoint(_model(), path)


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_state_dict(junk)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"weights": object()}, unsafe)  # arbitrary pickles are refused (weights_only)
    with pytest.raises(CheckpointError):
        read_state_dict(unsafe)
