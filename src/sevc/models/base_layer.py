"""The base layer: DCVC-DC's P-frame codec, run on the 4x-downsampled frame.

Motion is estimated with SpyNet, coded with its own hyperprior and four-part prior, and
used for multi-scale temporal context mining; the frame is coded conditionally on the
contexts with a hyperprior plus temporal latent prior. Besides its reconstruction, the
base layer hands the enhancement layer three spatial references: the decoded motion, the
reconstruction feature and the latent (its buffer's `mv`, `feature` and `y`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from ..latent_codecs import CodedLatent, FourPartLatentCodec, HyperpriorLatentCodec
from ..nn.layers import DepthConvBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv
from ..nn.ops import Conv2d
from ..nn.padding import HYPER_STRIDE, LATENT_STRIDE, crop, strided_size
from ..nn.resample import downsample2x, flow_warp
from .buffers import BaseBuffer
from .codec_base import Compressed, EntropyCodedModel, Estimated
from .motion import OffsetDiversity, SpyNet
from .rate import Rate
from .temporal_context import (CH_4X, CH_8X, CH_16X, CH_1X, ContextualDecoder, ContextualEncoder, Contexts,
                               FeatureExtractor, MultiScaleContextFusion, ReconGeneration, adapt_reference)

MV_CH = 64


def hyper_codec(y_ch: int, z_ch: int, shallow: bool) -> Tuple[nn.Sequential, nn.Sequential]:
    """Hyperprior analysis (latent -> z, /4) and synthesis (z -> prior features, x4)."""
    if shallow:
        enc = nn.Sequential(
            Conv2d(y_ch, z_ch, 3, stride=1, padding=1), nn.LeakyReLU(),
            Conv2d(z_ch, z_ch, 3, stride=2, padding=1), nn.LeakyReLU(),
            Conv2d(z_ch, z_ch, 3, stride=2, padding=1),
        )
    else:
        enc = nn.Sequential(
            conv3x3(y_ch, z_ch), nn.LeakyReLU(),
            conv3x3(z_ch, z_ch), nn.LeakyReLU(),
            conv3x3(z_ch, z_ch, stride=2), nn.LeakyReLU(),
            conv3x3(z_ch, z_ch), nn.LeakyReLU(),
            conv3x3(z_ch, z_ch, stride=2),
        )
    dec = nn.Sequential(
        conv3x3(z_ch, y_ch), nn.LeakyReLU(),
        subpel_conv(y_ch, y_ch, 2), nn.LeakyReLU(),
        conv3x3(y_ch, y_ch), nn.LeakyReLU(),
        subpel_conv(y_ch, y_ch, 2), nn.LeakyReLU(),
        conv3x3(y_ch, y_ch),
    )
    return enc, dec


class MvEnc(nn.Module):
    """Motion [B, 2, H, W] (+ previous motion feature) -> motion latent [B, 64, H/16, W/16]."""

    def __init__(self, input_channel: int, channel: int):
        super().__init__()
        self.enc_1 = nn.Sequential(ResidualBlockWithStride(input_channel, channel, stride=2),
                                   DepthConvBlock(channel, channel))
        self.enc_2 = ResidualBlockWithStride(channel, channel, stride=2)
        self.adaptor_0 = DepthConvBlock(channel, channel)
        self.adaptor_1 = DepthConvBlock(channel * 2, channel)
        self.enc_3 = nn.Sequential(
            ResidualBlockWithStride(channel, channel, stride=2),
            DepthConvBlock(channel, channel),
            Conv2d(channel, channel, 3, stride=2, padding=1),
        )

    def forward(self, mv: torch.Tensor, context: Optional[torch.Tensor], q_enc: torch.Tensor) -> torch.Tensor:
        out = self.enc_2(self.enc_1(mv) * q_enc)
        out = self.adaptor_0(out) if context is None else self.adaptor_1(torch.cat((out, context), dim=1))
        return self.enc_3(out)


class MvDec(nn.Module):
    """Motion latent -> (motion [B, 2, H, W], motion feature [B, 64, H/4, W/4])."""

    def __init__(self, output_channel: int, channel: int):
        super().__init__()
        self.dec_1 = nn.Sequential(
            DepthConvBlock(channel, channel),
            ResidualBlockUpsample(channel, channel, 2),
            DepthConvBlock(channel, channel),
            ResidualBlockUpsample(channel, channel, 2),
            DepthConvBlock(channel, channel),
        )
        self.dec_2 = ResidualBlockUpsample(channel, channel, 2)
        self.dec_3 = nn.Sequential(DepthConvBlock(channel, channel), subpel_conv(channel, output_channel, 2))

    def forward(self, mv_y_hat: torch.Tensor, q_dec: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feature = self.dec_1(mv_y_hat)
        return self.dec_3(self.dec_2(feature) * q_dec), feature


@dataclass(frozen=True)
class _Analysis:
    """What the base-layer encoder computes for one frame (see BaseLayerCodec._analyze): the coded
    latents (hyperpriors of the motion and of the frame, motion, frame) and the new buffer."""

    mv_z: CodedLatent
    z: CodedLatent
    mv_y: CodedLatent
    y: CodedLatent
    buffer: BaseBuffer


class BaseLayerCodec(EntropyCodedModel):
    """DCVC-DC's P-frame codec. Frames x [B, 3, h, w] in [0, 1], h and w multiples of 16; its
    state is a BaseBuffer. `frame_index` (the frame's position since the last I-frame) picks the
    hierarchical feature adaptor (frame_index % 4). Latent codecs: `mv_hyperprior` and `mv_latent`
    (the motion), `y_hyperprior` and `y_latent` (the frame), each latent with the four-part prior
    (Laplace)."""

    CHECKPOINT_ORDER = (
        "bit_estimator_z", "bit_estimator_z_mv", "optic_flow", "align", "mv_encoder", "mv_hyper_prior_encoder",
        "mv_hyper_prior_decoder", "mv_y_prior_fusion_adaptor_0", "mv_y_prior_fusion_adaptor_1", "mv_y_prior_fusion",
        "mv_y_spatial_prior_adaptor_1", "mv_y_spatial_prior_adaptor_2", "mv_y_spatial_prior_adaptor_3",
        "mv_y_spatial_prior", "mv_decoder", "feature_adaptor_I", "feature_adaptor", "feature_extractor",
        "context_fusion_net", "contextual_encoder", "contextual_hyper_prior_encoder", "contextual_hyper_prior_decoder",
        "temporal_prior_encoder", "y_prior_fusion_adaptor_0", "y_prior_fusion_adaptor_1", "y_prior_fusion",
        "y_spatial_prior_adaptor_1", "y_spatial_prior_adaptor_2", "y_spatial_prior_adaptor_3", "y_spatial_prior",
        "contextual_decoder", "recon_generation_net")

    def __init__(self, anchor_num: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__(ec_thread=ec_thread, stream_part=stream_part)
        self.add_q_scales("mv_y_", MV_CH, MV_CH, anchor_num)
        self.add_q_scales("y_", 128, 64, anchor_num)

        self.optic_flow = SpyNet()
        self.align = OffsetDiversity()
        self.mv_encoder = MvEnc(2, MV_CH)
        self.mv_hyperprior = HyperpriorLatentCodec(*hyper_codec(MV_CH, 64, shallow=False), 64, {
            "encoder": "mv_hyper_prior_encoder", "decoder": "mv_hyper_prior_decoder",
            "bit_estimator": "bit_estimator_z_mv"})
        self.mv_y_prior_fusion_adaptor_0 = DepthConvBlock(MV_CH, MV_CH * 2)
        self.mv_y_prior_fusion_adaptor_1 = DepthConvBlock(MV_CH * 2, MV_CH * 2)
        self.mv_y_prior_fusion = nn.Sequential(DepthConvBlock(MV_CH * 2, MV_CH * 3),
                                               DepthConvBlock(MV_CH * 3, MV_CH * 3))
        self.mv_latent = FourPartLatentCodec(MV_CH, "mv_y", "laplace")
        self.mv_decoder = MvDec(2, MV_CH)

        self.feature_adaptor_I = Conv2d(3, CH_1X, 3, stride=1, padding=1)
        self.feature_adaptor = nn.ModuleList([Conv2d(CH_1X, CH_1X, 1) for _ in range(3)])
        self.feature_extractor = FeatureExtractor()
        self.context_fusion_net = MultiScaleContextFusion()
        self.contextual_encoder = ContextualEncoder()
        self.y_hyperprior = HyperpriorLatentCodec(*hyper_codec(CH_16X, CH_16X, shallow=True), CH_16X, {
            "encoder": "contextual_hyper_prior_encoder", "decoder": "contextual_hyper_prior_decoder",
            "bit_estimator": "bit_estimator_z"})
        self.temporal_prior_encoder = nn.Sequential(
            Conv2d(CH_4X, CH_8X, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            Conv2d(CH_8X, CH_16X, 3, stride=2, padding=1),
        )
        self.y_prior_fusion_adaptor_0 = DepthConvBlock(CH_16X * 2, CH_16X * 3)
        self.y_prior_fusion_adaptor_1 = DepthConvBlock(CH_16X * 3, CH_16X * 3)
        self.y_prior_fusion = nn.Sequential(DepthConvBlock(CH_16X * 3, CH_16X * 3),
                                            DepthConvBlock(CH_16X * 3, CH_16X * 3))
        self.y_latent = FourPartLatentCodec(CH_16X, "y", "laplace")
        self.contextual_decoder = ContextualDecoder()
        self.recon_generation_net = ReconGeneration()

    def _mv_params(self, mv_hyper: torch.Tensor, buffer: BaseBuffer, height: int, width: int) -> torch.Tensor:
        params = crop(mv_hyper, height, width)
        if buffer.mv_y is None:
            params = self.mv_y_prior_fusion_adaptor_0(params)
        else:
            params = self.mv_y_prior_fusion_adaptor_1(torch.cat((params, buffer.mv_y), dim=1))
        return self.mv_y_prior_fusion(params)

    def _y_params(self, hyper: torch.Tensor, buffer: BaseBuffer, context3: torch.Tensor, height: int,
                  width: int) -> torch.Tensor:
        hierarchical = crop(hyper, height, width)
        temporal = self.temporal_prior_encoder(context3)
        if buffer.y is None:
            params = self.y_prior_fusion_adaptor_0(torch.cat((temporal, hierarchical), dim=1))
        else:
            params = self.y_prior_fusion_adaptor_1(torch.cat((temporal, hierarchical, buffer.y), dim=1))
        return self.y_prior_fusion(params)

    def _contexts(self, buffer: BaseBuffer, mv_hat: torch.Tensor, frame_index: int) -> Contexts:
        """Temporal contexts at 1x, 1/2, 1/4 from the reference aligned by the decoded motion."""
        warped_frame = flow_warp(buffer.frame, mv_hat)
        mv2 = downsample2x(mv_hat) / 2
        mv3 = downsample2x(mv2) / 2
        feature = adapt_reference(self.feature_adaptor_I, self.feature_adaptor, buffer.frame, buffer.feature,
                                  frame_index)
        ref1, ref2, ref3 = self.feature_extractor(feature)
        context1 = self.align(ref1, torch.cat((flow_warp(ref1, mv_hat), warped_frame, mv_hat), dim=1), mv_hat)
        return self.context_fusion_net(context1, flow_warp(ref2, mv2), flow_warp(ref3, mv3))

    def _decoded(self, y_hat: torch.Tensor, mv_y_hat: torch.Tensor, mv_hat: torch.Tensor, mv_feature: torch.Tensor,
                 contexts: Contexts, q_dec: torch.Tensor) -> BaseBuffer:
        """The new buffer: the reconstruction (clamped to [0, 1]) and everything the next frame refers to."""
        feature, x_hat = self.recon_generation_net(self.contextual_decoder(y_hat, contexts[1], contexts[2], q_dec),
                                                   contexts[0])
        return BaseBuffer(x_hat.clamp_(0, 1), feature, mv_feature, y_hat, mv_y_hat, mv_hat)

    def _analyze(self, x: torch.Tensor, buffer: BaseBuffer, rate: Rate, frame_index: int) -> _Analysis:
        """Everything the encoder computes: the coded latents and the new buffer."""
        mv_q_enc, mv_q_dec = self.q_scales("mv_y_", rate)
        y_q_enc, y_q_dec = self.q_scales("y_", rate)
        mv = self.mv_encoder(self.optic_flow(x, buffer.frame), buffer.mv_feature, mv_q_enc)
        mv_z, mv_hyper = self.mv_hyperprior(mv)
        mv_y = self.mv_latent(mv, self._mv_params(mv_hyper, buffer, *mv.shape[2:]))
        mv_hat, mv_feature = self.mv_decoder(mv_y.y_hat, mv_q_dec)
        contexts = self._contexts(buffer, mv_hat, frame_index)
        y = self.contextual_encoder(x, *contexts, y_q_enc)
        z, hyper = self.y_hyperprior(y)
        y_coded = self.y_latent(y, self._y_params(hyper, buffer, contexts[2], *y.shape[2:]))
        return _Analysis(mv_z, z, mv_y, y_coded,
                         self._decoded(y_coded.y_hat, mv_y.y_hat, mv_hat, mv_feature, contexts, y_q_dec))

    def forward(self, x: torch.Tensor, buffer: BaseBuffer, *, rate: Rate, frame_index: int) -> Estimated[BaseBuffer]:
        """Test path and training: the new buffer and the estimated bits of the batch."""
        coded = self._analyze(x, buffer, rate, frame_index)
        return Estimated(coded.buffer, coded.y.bits() + coded.z.bits() + coded.mv_y.bits() + coded.mv_z.bits())

    def compress(self, x: torch.Tensor, buffer: BaseBuffer, *, rate: Rate, frame_index: int) -> Compressed[BaseBuffer]:
        """Encode x [1, 3, h, w] into one payload."""
        coded = self._analyze(x, buffer, rate, frame_index)
        return Compressed(coded.buffer, (self.payload((coded.mv_z, coded.z, coded.mv_y, coded.y)),))

    def decompress(self, payload: bytes, buffer: BaseBuffer, height: int, width: int, *, rate: Rate,
                   frame_index: int) -> BaseBuffer:
        """Decode a frame of height x width (multiples of 16); returns the new buffer."""
        _, mv_q_dec = self.q_scales("mv_y_", rate)
        _, y_q_dec = self.q_scales("y_", rate)
        z_size = strided_size(height, width, HYPER_STRIDE)
        y_height, y_width = strided_size(height, width, LATENT_STRIDE)
        with self.reading(payload) as coder:
            mv_hyper = self.mv_hyperprior.decode(coder, z_size, self.device)
            hyper = self.y_hyperprior.decode(coder, z_size, self.device)
            mv_y_hat = self.mv_latent.decode(coder, self._mv_params(mv_hyper, buffer, y_height, y_width))
            mv_hat, mv_feature = self.mv_decoder(mv_y_hat, mv_q_dec)
            contexts = self._contexts(buffer, mv_hat, frame_index)
            y_hat = self.y_latent.decode(coder, self._y_params(hyper, buffer, contexts[2], y_height, y_width))
        return self._decoded(y_hat, mv_y_hat, mv_hat, mv_feature, contexts, y_q_dec)
