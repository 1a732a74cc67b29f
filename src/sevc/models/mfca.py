"""MFCA: motion & feature co-augmentation (SEVC, Sec. 3.2), the inter-layer prediction.

From the base layer's spatial references (its decoded motion and reconstruction feature,
both at 1/4 of the enhancement resolution) and the enhancement layer's temporal reference
feature, MFCA builds the hybrid spatial-temporal contexts at 3 scales (smallest first). At
each scale, 2 augment stages each refine the motion from [temporal feature, spatial feature,
motion] and then the spatial feature from the motion-aligned temporal feature; the motion is
x2-upsampled between scales and aligned with offset diversity at full scale.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..nn.layers import DepthConvBlock, ResBlock, subpel_conv
from ..nn.ops import Conv2d
from ..nn.resample import flow_warp, upsample2x
from .motion import OffsetDiversity
from .temporal_context import CH_1X, CH_2X, CH_4X, Contexts, FeatureExtractor, MultiScaleContextFusion


class AugmentUnit(nn.Module):
    """The Augment Unit: a small U-Net (down x4, up x4) predicting a residual update; H, W multiples of 4."""

    def __init__(self, in_ch: int, it_ch: int, out_ch: int):
        super().__init__()
        self.activate = nn.LeakyReLU()
        self.conv0 = Conv2d(in_ch, it_ch, 3, stride=2, padding=1)
        self.conv1 = Conv2d(it_ch, it_ch * 2, 3, stride=2, padding=1)
        self.conv2 = Conv2d(it_ch * 2, it_ch * 4, 3, stride=1, padding=1)
        self.up2 = subpel_conv(it_ch * 4, it_ch * 2, 2)
        self.up1 = subpel_conv(it_ch * 3, it_ch, 2)
        self.up0 = Conv2d(it_ch + in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The published unit activates in place, so its skip connection carries the
        # activated first feature; the checkpoints were trained and evaluated that way.
        d0 = self.activate(self.conv0(x))
        d2 = self.conv2(self.activate(self.conv1(d0)))
        u1 = self.up1(torch.cat([self.activate(self.up2(d2)), d0], dim=1))
        return self.up0(torch.cat([self.activate(u1), x], dim=1))


class MultiRoundEnhancement(nn.Module):
    """The augment stages of one scale: motion and spatial feature refine each other."""

    def __init__(self, iter_num: int = 2, out_ch: int = CH_1X):
        super().__init__()
        self.motion_layers = nn.ModuleList(
            [AugmentUnit(in_ch=out_ch * 2 + 2, it_ch=out_ch // 2, out_ch=2) for _ in range(iter_num)])
        self.texture_layers = nn.ModuleList(
            [AugmentUnit(in_ch=out_ch * 2, it_ch=out_ch * 3 // 4, out_ch=out_ch) for _ in range(iter_num)])

    def forward(self, temporal: torch.Tensor, spatial: torch.Tensor,
                mv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """temporal, spatial [B, C, H, W], mv [B, 2, H, W] -> (augmented spatial, augmented mv)."""
        for motion_unit, texture_unit in zip(self.motion_layers, self.texture_layers):
            mv = motion_unit(torch.cat([temporal, spatial, mv], dim=1)) + mv
            spatial = texture_unit(torch.cat([flow_warp(temporal, mv), spatial], dim=1)) + spatial
        return spatial, mv


class MFCA(nn.Module):
    """Motion & feature co-augmentation: the base layer's references (at 1/4 of the enhancement
    layer) and the enhancement layer's temporal references (full size) -> the hybrid contexts.
    It is the P-frame checkpoint's `ILP` (inter-layer prediction)."""

    def __init__(self, iter_num: int = 2):
        super().__init__()
        self.texture_adaptor = Conv2d(CH_1X, CH_4X, 3, stride=1, padding=1)
        self.feature_extractor = FeatureExtractor()
        self.up2 = nn.Sequential(subpel_conv(CH_4X, CH_2X, 2, kernel_size=3), ResBlock(CH_2X))
        self.up1 = nn.Sequential(subpel_conv(CH_2X, CH_1X, 2, kernel_size=3), ResBlock(CH_1X))
        self.mre1 = MultiRoundEnhancement(iter_num, CH_1X)
        self.mre2 = MultiRoundEnhancement(iter_num, CH_2X)
        self.mre3 = MultiRoundEnhancement(iter_num, CH_4X)
        self.align = OffsetDiversity()
        self.context_fusion_net = MultiScaleContextFusion()
        self.fuse1 = DepthConvBlock(CH_1X * 2, CH_1X)
        self.fuse2 = DepthConvBlock(CH_2X * 2, CH_2X)
        self.fuse3 = DepthConvBlock(CH_4X * 2, CH_4X)

    def forward(self, base_feature: torch.Tensor, base_mv: torch.Tensor, ref_feature: torch.Tensor,
                ref_frame: torch.Tensor) -> Contexts:
        """Hybrid contexts at 1x (48 ch), 1/2 (64) and 1/4 (96).

        base_feature [B, 48, H/4, W/4] and base_mv [B, 2, H/4, W/4]: the base layer's
        references; ref_feature [B, 48, H, W] and ref_frame [B, 3, H, W]: the temporal ones.
        """
        temporal = self.feature_extractor(ref_feature)[::-1]        # 1/4, 1/2, 1x
        upsamplers = (None, self.up2, self.up1)
        stages = (self.mre3, self.mre2, self.mre1)
        spatial, mv = self.texture_adaptor(base_feature), base_mv
        spatial_scales, mvs = [], []
        for scale, (upsample, stage) in enumerate(zip(upsamplers, stages)):
            if upsample is not None:
                spatial, mv = upsample(spatial), upsample2x(mv) * 2.0
            spatial, mv = stage(temporal[scale], spatial, mv)
            spatial_scales.append(spatial)
            mvs.append(mv)
        feature1, mv1 = temporal[2], mvs[2]
        warped_frame = flow_warp(ref_frame, mv1)
        context1 = self.align(feature1, torch.cat((flow_warp(feature1, mv1), warped_frame, mv1), dim=1), mv1)
        context2 = flow_warp(temporal[1], mvs[1])
        context3 = flow_warp(temporal[0], mvs[0])
        context1 = self.fuse1(torch.cat([context1, spatial_scales[2]], dim=1))
        context2 = self.fuse2(torch.cat([context2, spatial_scales[1]], dim=1))
        context3 = self.fuse3(torch.cat([context3, spatial_scales[0]], dim=1))
        return self.context_fusion_net(context1, context2, context3)
