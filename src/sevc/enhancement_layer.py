"""The enhancement layer: full-resolution contextual coding on MFCA's hybrid contexts.

Its latent prior fuses a temporal prior (encoded from the contexts) with the spatial-guided
latent prior, through an adaptor chosen by how full the latent queue is, then the four-part
spatial prior codes the latent. There is no hyperprior (the checkpoint still holds an unused
`bit_estimator_z`).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

from .base_layer import four_part_prior_modules
from .codec_base import EntropyCodedModel
from .layers import DepthConvBlock
from .temporal_context import CH_1X, CH_2X, CH_4X, CH_8X, CH_16X, ContextualDecoder, ContextualEncoder, ReconGeneration

QUEUE = 3


class ContextEncoder(nn.Module):
    """Hybrid contexts (1x, 1/2, 1/4) -> temporal prior features [B, 128, H/16, W/16]."""

    def __init__(self):
        super().__init__()
        self.activate = nn.LeakyReLU(0.1)
        self.enc1 = nn.Conv2d(CH_1X, CH_2X, 3, stride=2, padding=1)
        self.enc2 = nn.Conv2d(CH_2X * 2, CH_4X, 3, stride=2, padding=1)
        self.enc3 = nn.Conv2d(CH_4X * 2, CH_8X, 3, stride=2, padding=1)
        self.enc4 = nn.Conv2d(CH_8X, CH_16X, 3, stride=2, padding=1)

    def forward(self, context1, context2, context3):
        f = self.activate(self.enc1(context1))
        f = self.activate(self.enc2(torch.cat([context2, f], dim=1)))
        f = self.activate(self.enc3(torch.cat([context3, f], dim=1)))
        return self.enc4(f)


def push_latent(ref_ys: Sequence, y_hat: torch.Tensor) -> list:
    """The latent queue (oldest first) after adding y_hat."""
    return [*ref_ys[1:], y_hat]


class EnhancementLayerCodec(EntropyCodedModel):
    """Full-resolution codec. Its dpb: ref_frame [1, 3, H, W], ref_feature [1, 48, H, W] or
    None, ref_ys (the queue of the 3 latest latents, oldest first, None when empty)."""

    def __init__(self, anchor_num: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__("laplace", z_channel=64, ec_thread=ec_thread, stream_part=stream_part)
        self.add_q_params("y_", 128, 64, anchor_num)
        self.contextual_encoder = ContextualEncoder()
        self.temporal_prior_encoder = ContextEncoder()
        for k in range(QUEUE + 1):
            setattr(self, f"y_prior_fusion_adaptor_{k}", DepthConvBlock(CH_16X * 2, CH_16X * 2))
        self.y_prior_fusion = nn.Sequential(DepthConvBlock(CH_16X * 2, CH_16X * 3),
                                            DepthConvBlock(CH_16X * 3, CH_16X * 3))
        self.y_prior = four_part_prior_modules(self, "y", CH_16X)
        self.contextual_decoder = ContextualDecoder()
        self.recon_generation_net = ReconGeneration()

    def q_steps(self, q_in_ckpt: bool, q_index: int):
        return self.q_step_pair("y_", q_in_ckpt, q_index)

    def _params(self, contexts, latent_prior, ref_ys):
        """Prior params from the contexts and the spatial-guided latent prior."""
        params = torch.cat((self.temporal_prior_encoder(*contexts), latent_prior), dim=1)
        filled = sum(y is not None for y in ref_ys)
        return self.y_prior_fusion(getattr(self, f"y_prior_fusion_adaptor_{filled}")(params))

    def _decoded_dpb(self, y_hat, contexts, ref_ys, y_q_dec) -> Dict:
        decoded = self.contextual_decoder(y_hat, contexts[1], contexts[2], y_q_dec)
        feature, x_hat = self.recon_generation_net(decoded, contexts[0])
        return {"ref_frame": x_hat, "ref_feature": feature, "ref_ys": push_latent(ref_ys, y_hat)}

    def _analyze(self, x, contexts, latent_prior, ref_ys, q_in_ckpt, q_index):
        y_q_enc, y_q_dec = self.q_steps(q_in_ckpt, q_index)
        y = self.contextual_encoder(x, *contexts, y_q_enc)
        coded = self.y_prior.forward(y, self._params(contexts, latent_prior, ref_ys), self.training)
        return coded, self._decoded_dpb(coded.y_hat, contexts, ref_ys, y_q_dec)

    def forward(self, x, contexts, latent_prior, ref_ys, q_in_ckpt: bool = False, q_index: int = 0):
        """Test path and training: (new dpb, estimated bits of the batch, a 0-d tensor).

        x [B, 3, H, W]; its reconstruction is not clamped."""
        coded, new_dpb = self._analyze(x, contexts, latent_prior, ref_ys, q_in_ckpt, q_index)
        pixels = x.shape[2] * x.shape[3]
        bpp = torch.sum(self.latent_model.bits(coded.y_q, coded.scales), dim=(1, 2, 3)) / pixels
        return new_dpb, torch.sum(bpp) * pixels

    def compress(self, x, contexts, latent_prior, ref_ys, q_in_ckpt: bool, q_index: int):
        coded, new_dpb = self._analyze(x, contexts, latent_prior, ref_ys, q_in_ckpt, q_index)
        coder = self.coder()
        coder.reset()
        for y_q, scales in coded.steps:
            self.latent_model.encode(coder, y_q, scales)
        return new_dpb, coder.flush()

    def decompress(self, bit_stream: bytes, contexts, latent_prior, ref_ys, q_in_ckpt: bool, q_index: int) -> Dict:
        _, y_q_dec = self.q_steps(q_in_ckpt, q_index)
        coder = self.coder()
        coder.set_stream(bit_stream)
        y_hat = self.y_prior.decode(self._params(contexts, latent_prior, ref_ys),
                                    lambda scales: self.latent_model.decode(coder, scales))
        coder.finish()
        return self._decoded_dpb(y_hat, contexts, ref_ys, y_q_dec)
