"""The base layer: DCVC-DC's P-frame codec, run on the 4x-downsampled frame.

Motion is estimated with SpyNet, coded with its own hyperprior and four-part prior, and
used for multi-scale temporal context mining; the frame is coded conditionally on the
contexts with a hyperprior plus temporal latent prior. Besides its reconstruction, the
base layer hands the enhancement layer three spatial references: the decoded motion
(`ref_mv`), the reconstruction feature (`ref_feature`) and the latent (`ref_y`).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .codec_base import EntropyCodedModel
from .layers import DepthConvBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv
from .motion import ME_Spynet, OffsetDiversity, downsample2x, flow_warp
from .padding import crop, downsampled_shape
from .quantization import quantize, rate_proxy
from .spatial_prior import FourPartPrior
from .temporal_context import (CH_4X, CH_8X, CH_16X, CH_1X, ContextualDecoder, ContextualEncoder,
                               FeatureExtractor, MultiScaleContextFusion, ReconGeneration, adapt_reference)

MV_CH = 64


def hyper_codec(y_ch: int, z_ch: int, shallow: bool) -> Tuple[nn.Sequential, nn.Sequential]:
    """Hyperprior analysis (latent -> z, /4) and synthesis (z -> prior features, x4)."""
    if shallow:
        enc = nn.Sequential(
            nn.Conv2d(y_ch, z_ch, 3, stride=1, padding=1), nn.LeakyReLU(),
            nn.Conv2d(z_ch, z_ch, 3, stride=2, padding=1), nn.LeakyReLU(),
            nn.Conv2d(z_ch, z_ch, 3, stride=2, padding=1),
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
            nn.Conv2d(channel, channel, 3, stride=2, padding=1),
        )

    def forward(self, mv, context: Optional[torch.Tensor], quant_step):
        out = self.enc_2(self.enc_1(mv) * quant_step)
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

    def forward(self, mv_y_hat, quant_step):
        feature = self.dec_1(mv_y_hat)
        return self.dec_3(self.dec_2(feature) * quant_step), feature


def four_part_prior_modules(owner: nn.Module, prefix: str, ch: int) -> FourPartPrior:
    """Create `<prefix>_spatial_prior_adaptor_{1,2,3}` and `<prefix>_spatial_prior` on owner."""
    for k in (1, 2, 3):
        setattr(owner, f"{prefix}_spatial_prior_adaptor_{k}", nn.Conv2d(ch * 4, ch * 3, 1))
    setattr(owner, f"{prefix}_spatial_prior", nn.Sequential(
        DepthConvBlock(ch * 3, ch * 3),
        DepthConvBlock(ch * 3, ch * 3),
        DepthConvBlock(ch * 3, ch * 2),
    ))
    return FourPartPrior([getattr(owner, f"{prefix}_spatial_prior_adaptor_{k}") for k in (1, 2, 3)],
                         getattr(owner, f"{prefix}_spatial_prior"))


class BaseLayerCodec(EntropyCodedModel):
    """DCVC-DC P-frame codec. Frames x [1, 3, H, W] in [0, 1], H and W multiples of 16.

    The decoded picture buffer (dpb) is a dict: ref_frame [1, 3, H, W], ref_feature
    [1, 48, H, W] or None (after an I-frame or a reset), ref_mv_feature, ref_y, ref_mv_y
    (None after an I-frame) and, after a P-frame, ref_mv [1, 2, H, W].
    """

    def __init__(self, anchor_num: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__("laplace", z_channel=CH_16X, mv_z_channel=MV_CH, ec_thread=ec_thread,
                         stream_part=stream_part)
        self.add_q_params("mv_y_", MV_CH, MV_CH, anchor_num)
        self.add_q_params("y_", 128, 64, anchor_num)

        self.optic_flow = ME_Spynet()
        self.align = OffsetDiversity()
        self.mv_encoder = MvEnc(2, MV_CH)
        self.mv_hyper_prior_encoder, self.mv_hyper_prior_decoder = hyper_codec(MV_CH, 64, shallow=False)
        self.mv_y_prior_fusion_adaptor_0 = DepthConvBlock(MV_CH, MV_CH * 2)
        self.mv_y_prior_fusion_adaptor_1 = DepthConvBlock(MV_CH * 2, MV_CH * 2)
        self.mv_y_prior_fusion = nn.Sequential(DepthConvBlock(MV_CH * 2, MV_CH * 3),
                                               DepthConvBlock(MV_CH * 3, MV_CH * 3))
        self.mv_prior = four_part_prior_modules(self, "mv_y", MV_CH)
        self.mv_decoder = MvDec(2, MV_CH)

        self.feature_adaptor_I = nn.Conv2d(3, CH_1X, 3, stride=1, padding=1)
        self.feature_adaptor = nn.ModuleList([nn.Conv2d(CH_1X, CH_1X, 1) for _ in range(3)])
        self.feature_extractor = FeatureExtractor()
        self.context_fusion_net = MultiScaleContextFusion()
        self.contextual_encoder = ContextualEncoder()
        self.contextual_hyper_prior_encoder, self.contextual_hyper_prior_decoder = \
            hyper_codec(CH_16X, CH_16X, shallow=True)
        self.temporal_prior_encoder = nn.Sequential(
            nn.Conv2d(CH_4X, CH_8X, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(CH_8X, CH_16X, 3, stride=2, padding=1),
        )
        self.y_prior_fusion_adaptor_0 = DepthConvBlock(CH_16X * 2, CH_16X * 3)
        self.y_prior_fusion_adaptor_1 = DepthConvBlock(CH_16X * 3, CH_16X * 3)
        self.y_prior_fusion = nn.Sequential(DepthConvBlock(CH_16X * 3, CH_16X * 3),
                                            DepthConvBlock(CH_16X * 3, CH_16X * 3))
        self.y_prior = four_part_prior_modules(self, "y", CH_16X)
        self.contextual_decoder = ContextualDecoder()
        self.recon_generation_net = ReconGeneration()

    def q_steps(self, q_in_ckpt: bool, q_index: int):
        """(mv encoder, mv decoder, y encoder, y decoder) quantization scales for a rate."""
        return self.q_step_pair("mv_y_", q_in_ckpt, q_index) + self.q_step_pair("y_", q_in_ckpt, q_index)

    def _mv_params(self, mv_z_hat, dpb, height: int, width: int):
        params = crop(self.mv_hyper_prior_decoder(mv_z_hat), height, width)
        if dpb["ref_mv_y"] is None:
            params = self.mv_y_prior_fusion_adaptor_0(params)
        else:
            params = self.mv_y_prior_fusion_adaptor_1(torch.cat((params, dpb["ref_mv_y"]), dim=1))
        return self.mv_y_prior_fusion(params)

    def _y_params(self, z_hat, dpb, context3, height: int, width: int):
        hierarchical = crop(self.contextual_hyper_prior_decoder(z_hat), height, width)
        temporal = self.temporal_prior_encoder(context3)
        if dpb["ref_y"] is None:
            params = self.y_prior_fusion_adaptor_0(torch.cat((temporal, hierarchical), dim=1))
        else:
            params = self.y_prior_fusion_adaptor_1(torch.cat((temporal, hierarchical, dpb["ref_y"]), dim=1))
        return self.y_prior_fusion(params)

    def _contexts(self, dpb, mv_hat, frame_index: int):
        """Temporal contexts at 1x, 1/2, 1/4 from the reference aligned by the decoded motion."""
        warped_frame = flow_warp(dpb["ref_frame"], mv_hat)
        mv2 = downsample2x(mv_hat) / 2
        mv3 = downsample2x(mv2) / 2
        feature = adapt_reference(self.feature_adaptor_I, self.feature_adaptor, dpb, frame_index)
        ref1, ref2, ref3 = self.feature_extractor(feature)
        context1 = self.align(ref1, torch.cat((flow_warp(ref1, mv_hat), warped_frame, mv_hat), dim=1), mv_hat)
        return self.context_fusion_net(context1, flow_warp(ref2, mv2), flow_warp(ref3, mv3))

    def _reconstruct(self, y_hat, contexts, y_q_dec):
        feature, x_hat = self.recon_generation_net(self.contextual_decoder(y_hat, contexts[1], contexts[2], y_q_dec),
                                                   contexts[0])
        return x_hat.clamp_(0, 1), feature

    def _decoded_dpb(self, y_hat, mv_y_hat, mv_hat, mv_feature, contexts, y_q_dec) -> Dict:
        x_hat, feature = self._reconstruct(y_hat, contexts, y_q_dec)
        return {"ref_frame": x_hat, "ref_feature": feature, "ref_mv": mv_hat, "ref_mv_feature": mv_feature,
                "ref_y": y_hat, "ref_mv_y": mv_y_hat}

    def _analyze(self, x, dpb, q_in_ckpt: bool, q_index: int, frame_index: int):
        """Everything the encoder computes: latents, their priors and the new dpb."""
        mv_q_enc, mv_q_dec, y_q_enc, y_q_dec = self.q_steps(q_in_ckpt, q_index)
        mv_y = self.mv_encoder(self.optic_flow(x, dpb["ref_frame"]), dpb["ref_mv_feature"], mv_q_enc)
        mv_z = self.mv_hyper_prior_encoder(self.pad_latent(mv_y))
        mv_z_hat = quantize(mv_z, self.training)
        mv_coded = self.mv_prior.forward(mv_y, self._mv_params(mv_z_hat, dpb, *mv_y.shape[2:]), self.training)
        mv_hat, mv_feature = self.mv_decoder(mv_coded.y_hat, mv_q_dec)
        contexts = self._contexts(dpb, mv_hat, frame_index)
        y = self.contextual_encoder(x, *contexts, y_q_enc)
        z = self.contextual_hyper_prior_encoder(self.pad_latent(y))
        z_hat = quantize(z, self.training)
        y_coded = self.y_prior.forward(y, self._y_params(z_hat, dpb, contexts[2], *y.shape[2:]), self.training)
        new_dpb = self._decoded_dpb(y_coded.y_hat, mv_coded.y_hat, mv_hat, mv_feature, contexts, y_q_dec)
        return (rate_proxy(mv_z, mv_z_hat, self.training), rate_proxy(z, z_hat, self.training), mv_coded, y_coded,
                new_dpb)

    def forward(self, x, dpb, q_in_ckpt: bool = False, q_index: int = 0, frame_index: int = 0):
        """Test path and training: (new dpb, estimated bits of the batch, a 0-d tensor)."""
        mv_z_hat, z_hat, mv_coded, y_coded, new_dpb = self._analyze(x, dpb, q_in_ckpt, q_index, frame_index)
        pixels = x.shape[2] * x.shape[3]
        bpp = sum(torch.sum(bits, dim=(1, 2, 3)) / pixels for bits in (
            self.latent_model.bits(y_coded.y_q, y_coded.scales),
            self.bit_estimator_z.bits(z_hat),
            self.latent_model.bits(mv_coded.y_q, mv_coded.scales),
            self.bit_estimator_z_mv.bits(mv_z_hat),
        ))
        return new_dpb, torch.sum(bpp) * pixels

    def compress(self, x, dpb, q_in_ckpt: bool, q_index: int, frame_index: int):
        """(new dpb, base-layer payload bytes)."""
        mv_z_hat, z_hat, mv_coded, y_coded, new_dpb = self._analyze(x, dpb, q_in_ckpt, q_index, frame_index)
        coder = self.coder()
        coder.reset()
        self.bit_estimator_z_mv.encode(coder, mv_z_hat)
        self.bit_estimator_z.encode(coder, z_hat)
        for coded in (mv_coded, y_coded):
            for y_q, scales in coded.steps:
                self.latent_model.encode(coder, y_q, scales)
        return new_dpb, coder.flush()

    def decompress(self, dpb, bit_stream: bytes, height: int, width: int, q_in_ckpt: bool, q_index: int,
                   frame_index: int) -> Dict:
        """Decode a base-layer frame of height x width (multiples of 16); returns the new dpb."""
        device = self.y_q_basic_dec.device
        _, mv_q_dec, _, y_q_dec = self.q_steps(q_in_ckpt, q_index)
        coder = self.coder()
        coder.set_stream(bit_stream)
        z_size = downsampled_shape(height, width, 64)
        y_height, y_width = downsampled_shape(height, width, 16)
        mv_z_hat = self.bit_estimator_z_mv.decode(coder, z_size, device)
        z_hat = self.bit_estimator_z.decode(coder, z_size, device)
        read = lambda scales: self.latent_model.decode(coder, scales)  # noqa: E731
        mv_y_hat = self.mv_prior.decode(self._mv_params(mv_z_hat, dpb, y_height, y_width), read)
        mv_hat, mv_feature = self.mv_decoder(mv_y_hat, mv_q_dec)
        contexts = self._contexts(dpb, mv_hat, frame_index)
        y_hat = self.y_prior.decode(self._y_params(z_hat, dpb, contexts[2], y_height, y_width), read)
        coder.finish()
        return self._decoded_dpb(y_hat, mv_y_hat, mv_hat, mv_feature, contexts, y_q_dec)
