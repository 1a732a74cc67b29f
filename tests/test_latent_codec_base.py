"""Latent codecs as modules: the published (flat) checkpoint keys and order are kept, and a
codec's latent codec is swapped in one place."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from sevc.entropy.coder import EntropyCoder
from sevc.entropy.quantization import quantize
from sevc.entropy.scale_table import ScaleTableModel, scale_table_model
from sevc.errors import CheckpointError
from sevc.latent_codecs import FourPartLatentCodec, LatentCodec
from sevc.models import IntraNoAR, Rate
from sevc.weights.checkpoint import load_weights
from sevc.models.codec_base import EntropyCodedModel
from sevc.nn.ops import Conv2d


class Owner(EntropyCodedModel):
    CHECKPOINT_ORDER = ("y_spatial_prior_adaptor_1", "y_spatial_prior_adaptor_2", "y_spatial_prior_adaptor_3",
                        "enc", "y_spatial_prior")

    def __init__(self):
        super().__init__()
        self.add_q_scales("", 4, 4, 2)
        self.enc = Conv2d(3, 4, 1)
        self.y_latent = FourPartLatentCodec(4, "y", "laplace")


def test_state_dict_has_the_checkpoint_names_in_the_checkpoint_order():
    heads = []
    for key in Owner().state_dict():
        if key.split(".")[0] not in heads:
            heads.append(key.split(".")[0])
    assert heads == ["q_basic_enc", "q_scale_enc", "q_basic_dec", "q_scale_dec", *Owner.CHECKPOINT_ORDER]


def test_checkpoint_names_load_into_the_latent_codec():
    torch.manual_seed(0)
    source, target = Owner(), Owner()
    load_weights(target, source.state_dict())
    assert torch.equal(target.y_latent.adaptor_2.weight, source.y_latent.adaptor_2.weight)
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))


def test_a_codec_with_latent_codecs_pickles_whole(tmp_path):
    """Also when another codec has built the scale-table model it shares (its tables are a cache
    of C++ objects, left out of the pickle)."""
    torch.manual_seed(0)
    Owner().update(force=True)
    owner = Owner()
    torch.save(owner, tmp_path / "owner.pt")
    loaded = torch.load(tmp_path / "owner.pt", weights_only=False)
    assert list(loaded.state_dict()) == list(owner.state_dict())
    assert torch.equal(loaded.y_latent.prior[0].block[0].conv1[0].weight, owner.y_latent.prior[0].block[0].conv1[0].weight)


def test_a_missing_entry_is_named_by_its_checkpoint_name():
    state = Owner().state_dict()
    del state["y_spatial_prior_adaptor_3.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys y_spatial_prior_adaptor_3\.bias"):
        load_weights(Owner(), state)


@dataclass
class MeanScaleLatent:
    y_hat: torch.Tensor
    y_q: torch.Tensor
    scales: torch.Tensor
    model: ScaleTableModel

    def bits(self) -> torch.Tensor:
        return self.model.bits(self.y_q, self.scales).sum()

    def write(self, coder: EntropyCoder) -> None:
        self.model.encode(coder, self.y_q, self.scales)


class MeanScaleLatentCodec(LatentCodec):
    """A one-step latent codec (no spatial context): every residual with the prior's first scales
    and means; it has no networks."""

    def __init__(self):
        super().__init__({})
        self.model = scale_table_model("gaussian")

    def update(self, force: bool = False) -> None:
        self.model.update(force)

    def forward(self, y: torch.Tensor, params: torch.Tensor) -> MeanScaleLatent:
        step, scales, means = params.chunk(3, 1)
        step = step.clamp_min(0.5)
        y_q = quantize(y / step - means, self.training)
        return MeanScaleLatent((y_q + means) * step, y_q, scales, self.model)

    def decode(self, coder: EntropyCoder, params: torch.Tensor) -> torch.Tensor:
        step, scales, means = params.chunk(3, 1)
        return (self.model.decode(coder, scales) + means) * step.clamp_min(0.5)


def test_a_latent_codec_is_swapped_in_one_place():
    """Replacing the I-frame codec's four-part prior by another latent codec is one assignment:
    compress and decompress then use it, and the checkpoint loses the four-part prior's entries."""
    torch.manual_seed(0)
    model = IntraNoAR(N=32, anchor_num=1)
    model.y_latent = MeanScaleLatentCodec()
    model.eval().update(force=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        encoded = model.compress(x, rate=Rate.of_anchor(0))
        decoded = model.decompress(encoded.payloads[0], 64, 64, rate=Rate.of_anchor(0))
    assert torch.equal(decoded, encoded.state)
    assert not any("spatial_prior" in key for key in model.state_dict())
