"""The enhancement layer: full-resolution contextual coding on MFCA's hybrid contexts.

Its latent prior fuses a temporal prior (encoded from the contexts) with the spatial-guided
latent prior, through an adaptor chosen by how full the latent queue is; then the four-part
spatial prior codes the latent. There is no hyperprior (the checkpoint still holds an unused
`bit_estimator_z`).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..entropy.bit_estimator import BitEstimator
from ..latent_codecs import CodedLatent, FourPartLatentCodec
from ..nn.layers import DepthConvBlock
from ..nn.ops import Conv2d
from .buffers import LATENT_QUEUE, EnhancementBuffer
from .codec_base import Compressed, EntropyCodedModel, Estimated
from .rate import Rate
from .temporal_context import (CH_1X, CH_2X, CH_4X, CH_8X, CH_16X, ContextualDecoder, ContextualEncoder, Contexts,
                               ReconGeneration)


class TemporalPriorEncoder(nn.Module):
    """Hybrid contexts (1x, 1/2, 1/4) -> temporal prior features [B, 128, H/16, W/16]."""

    def __init__(self):
        super().__init__()
        self.activate = nn.LeakyReLU(0.1)
        self.enc1 = Conv2d(CH_1X, CH_2X, 3, stride=2, padding=1)
        self.enc2 = Conv2d(CH_2X * 2, CH_4X, 3, stride=2, padding=1)
        self.enc3 = Conv2d(CH_4X * 2, CH_8X, 3, stride=2, padding=1)
        self.enc4 = Conv2d(CH_8X, CH_16X, 3, stride=2, padding=1)

    def forward(self, context1: torch.Tensor, context2: torch.Tensor, context3: torch.Tensor) -> torch.Tensor:
        f = self.activate(self.enc1(context1))
        f = self.activate(self.enc2(torch.cat([context2, f], dim=1)))
        f = self.activate(self.enc3(torch.cat([context3, f], dim=1)))
        return self.enc4(f)


class EnhancementLayerCodec(EntropyCodedModel):
    """Full-resolution codec of frames x [B, 3, H, W] (H, W multiples of 16) given MFCA's contexts
    and the spatial-guided latent prior; its state is an EnhancementBuffer. Latent codec:
    `y_latent` (the four-part prior, Laplace). `bit_estimator_z` is in the checkpoint, never used."""

    CHECKPOINT_ORDER = ("bit_estimator_z", "contextual_encoder", "temporal_prior_encoder",
                        *(f"y_prior_fusion_adaptor_{k}" for k in range(LATENT_QUEUE + 1)), "y_prior_fusion",
                        "y_spatial_prior_adaptor_1", "y_spatial_prior_adaptor_2", "y_spatial_prior_adaptor_3",
                        "y_spatial_prior", "contextual_decoder", "recon_generation_net")

    def __init__(self, anchor_num: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__(ec_thread=ec_thread, stream_part=stream_part)
        self.add_q_scales("y_", 128, 64, anchor_num)
        self.bit_estimator_z = BitEstimator(64)
        self.contextual_encoder = ContextualEncoder()
        self.temporal_prior_encoder = TemporalPriorEncoder()
        for k in range(LATENT_QUEUE + 1):
            setattr(self, f"y_prior_fusion_adaptor_{k}", DepthConvBlock(CH_16X * 2, CH_16X * 2))
        self.y_prior_fusion = nn.Sequential(DepthConvBlock(CH_16X * 2, CH_16X * 3),
                                            DepthConvBlock(CH_16X * 3, CH_16X * 3))
        self.y_latent = FourPartLatentCodec(CH_16X, "y", "laplace")
        self.contextual_decoder = ContextualDecoder()
        self.recon_generation_net = ReconGeneration()

    def _params(self, contexts: Contexts, latent_prior: torch.Tensor, buffer: EnhancementBuffer) -> torch.Tensor:
        """Prior params from the contexts and the spatial-guided latent prior."""
        params = torch.cat((self.temporal_prior_encoder(*contexts), latent_prior), dim=1)
        return self.y_prior_fusion(getattr(self, f"y_prior_fusion_adaptor_{buffer.queue_fill}")(params))

    def _decoded(self, y_hat: torch.Tensor, contexts: Contexts, buffer: EnhancementBuffer,
                 q_dec: torch.Tensor) -> EnhancementBuffer:
        """The new buffer; its frame (the reconstruction) is not clamped."""
        decoded = self.contextual_decoder(y_hat, contexts[1], contexts[2], q_dec)
        feature, x_hat = self.recon_generation_net(decoded, contexts[0])
        return EnhancementBuffer(x_hat, feature, buffer.queued(y_hat))

    def _analyze(self, x: torch.Tensor, contexts: Contexts, latent_prior: torch.Tensor, buffer: EnhancementBuffer,
                 rate: Rate) -> Tuple[CodedLatent, EnhancementBuffer]:
        q_enc, q_dec = self.q_scales("y_", rate)
        y = self.y_latent(self.contextual_encoder(x, *contexts, q_enc), self._params(contexts, latent_prior, buffer))
        return y, self._decoded(y.y_hat, contexts, buffer, q_dec)

    def forward(self, x: torch.Tensor, buffer: EnhancementBuffer, *, contexts: Contexts, latent_prior: torch.Tensor,
                rate: Rate) -> Estimated[EnhancementBuffer]:
        """Test path and training: the new buffer and the estimated bits of the batch."""
        y, new_buffer = self._analyze(x, contexts, latent_prior, buffer, rate)
        return Estimated(new_buffer, y.bits())

    def compress(self, x: torch.Tensor, buffer: EnhancementBuffer, *, contexts: Contexts, latent_prior: torch.Tensor,
                 rate: Rate) -> Compressed[EnhancementBuffer]:
        """Encode x [1, 3, H, W] into one payload."""
        y, new_buffer = self._analyze(x, contexts, latent_prior, buffer, rate)
        return Compressed(new_buffer, (self.payload((y,)),))

    def decompress(self, payload: bytes, buffer: EnhancementBuffer, *, contexts: Contexts,
                   latent_prior: torch.Tensor, rate: Rate) -> EnhancementBuffer:
        """Decode a frame; returns the new buffer."""
        _, q_dec = self.q_scales("y_", rate)
        with self.reading(payload) as coder:
            y_hat = self.y_latent.decode(coder, self._params(contexts, latent_prior, buffer))
        return self._decoded(y_hat, contexts, buffer, q_dec)
