"""The hyperprior latent codec: z is read back exactly, and so are the prior features it gives."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sevc.entropy.coder import EntropyCoder
from sevc.latent_codecs import HyperpriorLatentCodec

NAMES = {"encoder": "hyper_enc", "decoder": "hyper_dec", "bit_estimator": "bit_estimator_z"}


def hyperprior() -> HyperpriorLatentCodec:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1))
    decoder = nn.Sequential(nn.ConvTranspose2d(4, 8, 4, stride=4))
    return HyperpriorLatentCodec(encoder, decoder, 4, NAMES).eval()


def test_z_and_the_prior_features_are_read_back():
    codec = hyperprior()
    codec.update(force=True)
    y = 20 * torch.randn(1, 8, 7, 9)  # not a multiple of 4: padded before the encoder
    with torch.no_grad():
        z, features = codec(y)
        coder = EntropyCoder()
        coder.reset()
        z.write(coder)
        coder.set_stream(coder.flush())
        decoded = codec.decode(coder, tuple(z.y_hat.shape[2:]), torch.device("cpu"))
        coder.finish()
    assert z.y_hat.shape[2:] == (2, 3)
    assert torch.equal(decoded, features)
    assert torch.equal(z.y_hat, z.y_hat.round()) and z.bits().item() > 0


@pytest.mark.parametrize("noisy_rate", [False, True])
def test_train_mode_estimates_the_rate_on_rounded_or_noisy_z(noisy_rate):
    """Train mode: the rate on z_hat itself (default) or on z plus noise; the gradient reaches y."""
    codec = hyperprior().train()
    codec.noisy_rate = noisy_rate
    y = torch.randn(1, 8, 8, 8, requires_grad=True)
    z, features = codec(20 * y)
    assert torch.equal(z.proxy, z.y_hat) != noisy_rate
    (z.bits() + features.sum()).backward()
    assert y.grad.abs().sum() > 0
