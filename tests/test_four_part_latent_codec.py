"""The four-part latent codec: what it writes, it reads back within half a quantization step of the
latent; in train mode gradients pass through the rounding."""
from __future__ import annotations

import pytest
import torch

from sevc.entropy.coder import EntropyCoder
from sevc.latent_codecs import FourPartLatentCodec

C = 8


def coded_example(seed: int = 0, distribution: str = "laplace"):
    torch.manual_seed(seed)
    codec = FourPartLatentCodec(C, "y", distribution).eval()
    codec.update(force=True)
    y = 4 * torch.randn(1, C, 6, 10)
    params = torch.cat((torch.full((1, C, 6, 10), 0.7), torch.rand(1, C, 6, 10) + 0.3, torch.zeros(1, C, 6, 10)), 1)
    return codec, y, params


@pytest.mark.parametrize("distribution", ["laplace", "gaussian"])
def test_what_is_written_is_read_back(distribution):
    codec, y, params = coded_example(distribution=distribution)
    with torch.no_grad():
        coded = codec(y, params)
        coder = EntropyCoder()
        coder.reset()
        coded.write(coder)
        payload = coder.flush()
        coder.set_stream(payload)
        decoded = codec.decode(coder, params)
        coder.finish()
    assert torch.equal(decoded, coded.y_hat)
    assert (coded.y_hat - y).abs().max() <= 0.5 * codec.quant_step(params).max() + 1e-6


def test_train_mode_passes_gradients_through_the_rounding():
    codec, y, params = coded_example()
    codec.train()
    y.requires_grad_(True)
    coded = codec(y, params)
    (coded.y_hat.sum() + coded.bits()).backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all()) and y.grad.abs().sum() > 0


def test_its_networks_carry_the_checkpoint_names():
    codec = FourPartLatentCodec(C, "mv_y", "laplace")
    assert codec.checkpoint_names == {"adaptor_1": "mv_y_spatial_prior_adaptor_1",
                                      "adaptor_2": "mv_y_spatial_prior_adaptor_2",
                                      "adaptor_3": "mv_y_spatial_prior_adaptor_3", "prior": "mv_y_spatial_prior"}
