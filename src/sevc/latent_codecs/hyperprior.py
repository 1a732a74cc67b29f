"""The hyperprior as a latent codec: a latent y is analysed into a side latent z (1/4 of y's
resolution), z is coded with a factorized entropy model (DCVC-DC's bit estimator), and the
synthesis of z_hat gives the features from which the codec builds y's prior (Balle et al.,
"Variational image compression with a scale hyperprior", ICLR 2018)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import nn

from ..entropy.bit_estimator import BitEstimator
from ..entropy.coder import EntropyCoder
from ..entropy.quantization import quantize, rate_proxy
from ..nn.padding import HYPER_INPUT_MULTIPLE, pad_to_multiple
from .base import LatentCodec


@dataclass
class FactorizedLatent:
    """A hyperprior latent z [B, C, h, w] (a CodedLatent): y_hat is the rounded z, proxy what its
    rate is estimated on (z_hat, or z plus uniform noise in training with a noisy rate)."""

    y_hat: torch.Tensor
    proxy: torch.Tensor
    estimator: BitEstimator

    def bits(self) -> torch.Tensor:
        return self.estimator.bits(self.proxy).sum()

    def write(self, coder: EntropyCoder) -> None:
        self.estimator.encode(coder, self.y_hat)


class HyperpriorLatentCodec(LatentCodec):
    """Codes the hyperprior of a latent y [B, C, H, W]: `encoder` maps y (replicate-padded to
    multiples of 4) to z [B, z_channel, H/4, W/4], `decoder` maps z_hat to prior features
    [B, C', H', W'] (H' >= H: the codec crops them). checkpoint_names: the checkpoint names of
    `encoder`, `decoder` and `bit_estimator` in the owner."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, z_channel: int, checkpoint_names: Dict[str, str]):
        super().__init__(checkpoint_names)
        self.bit_estimator = BitEstimator(z_channel)
        self.encoder = encoder
        self.decoder = decoder

    def update(self, force: bool = False) -> None:
        self.bit_estimator.update(force)

    def forward(self, y: torch.Tensor) -> Tuple[FactorizedLatent, torch.Tensor]:
        """The coded z of y and the prior features of z_hat (straight-through rounding in train
        mode, and the rate proxy that `noisy_rate` chooses)."""
        z = self.encoder(pad_to_multiple(y, HYPER_INPUT_MULTIPLE, mode="replicate"))
        z_hat = quantize(z, self.training)
        return FactorizedLatent(z_hat, rate_proxy(z, z_hat, self.noisy), self.bit_estimator), self.decoder(z_hat)

    def decode(self, coder: EntropyCoder, size: Tuple[int, int], device: torch.device) -> torch.Tensor:
        """Read z_hat [1, C, size[0], size[1]] and return its prior features, on `device`."""
        return self.decoder(self.bit_estimator.decode(coder, size, device))
