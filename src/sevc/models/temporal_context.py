"""Multi-scale temporal contexts (DCVC-DC): reference features at 3 scales and their fusion.

Scales: 1x (48 channels), 1/2 (64), 1/4 (96) of the coded resolution.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..nn.layers import ResBlock, UNet, subpel_conv
from ..nn.ops import Conv2d

CH_1X, CH_2X, CH_4X, CH_8X, CH_16X = 48, 64, 96, 96, 128
FEATURE_ADAPTOR_FOR_INDEX = (0, 1, 0, 2)  # hierarchical quality: frame_index % 4 -> adaptor
Contexts = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # at 1x (48 ch), 1/2 (64), 1/4 (96)


def adapt_reference(adaptor_i: nn.Module, adaptors: Sequence[nn.Module], frame: torch.Tensor,
                    feature: Optional[torch.Tensor], frame_index: int) -> torch.Tensor:
    """Reference feature [B, 48, H, W]: from the reference frame [B, 3, H, W] after an I-frame (or
    a refresh, `feature` None), else the propagated feature through the adaptor of frame_index % 4."""
    if feature is None:
        return adaptor_i(frame)
    return adaptors[FEATURE_ADAPTOR_FOR_INDEX[frame_index % 4]](feature)


class FeatureExtractor(nn.Module):
    """Reference feature [B, 48, H, W] -> features at 1x, 1/2 and 1/4."""

    def __init__(self):
        super().__init__()
        self.conv1 = Conv2d(CH_1X, CH_1X, 3, stride=1, padding=1)
        self.res_block1 = ResBlock(CH_1X)
        self.conv2 = Conv2d(CH_1X, CH_2X, 3, stride=2, padding=1)
        self.res_block2 = ResBlock(CH_2X)
        self.conv3 = Conv2d(CH_2X, CH_4X, 3, stride=2, padding=1)
        self.res_block3 = ResBlock(CH_4X)

    def forward(self, feature: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        layer1 = self.res_block1(self.conv1(feature))
        layer2 = self.res_block2(self.conv2(layer1))
        layer3 = self.res_block3(self.conv3(layer2))
        return layer1, layer2, layer3


class MultiScaleContextFusion(nn.Module):
    """Top-down fusion of the 3 context scales, each refined residually."""

    def __init__(self):
        super().__init__()
        self.conv3_up = subpel_conv(CH_4X, CH_2X, 2, kernel_size=3)
        self.res_block3_up = ResBlock(CH_2X)
        self.conv3_out = Conv2d(CH_4X, CH_4X, 3, padding=1)
        self.res_block3_out = ResBlock(CH_4X)
        self.conv2_up = subpel_conv(CH_2X * 2, CH_1X, 2, kernel_size=3)
        self.res_block2_up = ResBlock(CH_1X)
        self.conv2_out = Conv2d(CH_2X * 2, CH_2X, 3, padding=1)
        self.res_block2_out = ResBlock(CH_2X)
        self.conv1_out = Conv2d(CH_1X * 2, CH_1X, 3, padding=1)
        self.res_block1_out = ResBlock(CH_1X)

    def forward(self, context1: torch.Tensor, context2: torch.Tensor, context3: torch.Tensor) -> Contexts:
        context3_up = self.res_block3_up(self.conv3_up(context3))
        context3_out = self.res_block3_out(self.conv3_out(context3))
        joint2 = torch.cat((context3_up, context2), dim=1)
        context2_up = self.res_block2_up(self.conv2_up(joint2))
        context2_out = self.res_block2_out(self.conv2_out(joint2))
        context1_out = self.res_block1_out(self.conv1_out(torch.cat((context2_up, context1), dim=1)))
        return context1 + context1_out, context2 + context2_out, context3 + context3_out


class ContextualEncoder(nn.Module):
    """Frame x [B, 3, H, W] and contexts -> latent y [B, 128, H/16, W/16]."""

    def __init__(self):
        super().__init__()
        self.conv1 = Conv2d(CH_1X + 3, CH_2X, 3, stride=2, padding=1)
        self.res1 = ResBlock(CH_2X * 2, bottleneck=True, slope=0.1, end_with_relu=True)
        self.conv2 = Conv2d(CH_2X * 2, CH_4X, 3, stride=2, padding=1)
        self.res2 = ResBlock(CH_4X * 2, bottleneck=True, slope=0.1, end_with_relu=True)
        self.conv3 = Conv2d(CH_4X * 2, CH_8X, 3, stride=2, padding=1)
        self.conv4 = Conv2d(CH_8X, CH_16X, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, context1: torch.Tensor, context2: torch.Tensor, context3: torch.Tensor,
                q_enc: torch.Tensor) -> torch.Tensor:
        feature = self.conv1(torch.cat([x, context1], dim=1))
        feature = self.res1(torch.cat([feature, context2], dim=1)) * q_enc
        feature = self.res2(torch.cat([self.conv2(feature), context3], dim=1))
        return self.conv4(self.conv3(feature))


class ContextualDecoder(nn.Module):
    """Latent y_hat [B, 128, H/16, W/16] and contexts -> features [B, 32, H, W]."""

    def __init__(self):
        super().__init__()
        self.up1 = subpel_conv(CH_16X, CH_8X, 2, kernel_size=3)
        self.up2 = subpel_conv(CH_8X, CH_4X, 2, kernel_size=3)
        self.res1 = ResBlock(CH_4X * 2, bottleneck=True, slope=0.1, end_with_relu=True)
        self.up3 = subpel_conv(CH_4X * 2, CH_2X, 2, kernel_size=3)
        self.res2 = ResBlock(CH_2X * 2, bottleneck=True, slope=0.1, end_with_relu=True)
        self.up4 = subpel_conv(CH_2X * 2, 32, 2, kernel_size=3)

    def forward(self, y_hat: torch.Tensor, context2: torch.Tensor, context3: torch.Tensor,
                q_dec: torch.Tensor) -> torch.Tensor:
        feature = self.up2(self.up1(y_hat))
        feature = self.up3(self.res1(torch.cat([feature, context3], dim=1))) * q_dec
        return self.up4(self.res2(torch.cat([feature, context2], dim=1)))


class ReconGeneration(nn.Module):
    """Decoded features [B, 32, H, W] + context1 -> (feature [B, 48, H, W], frame [B, 3, H, W])."""

    def __init__(self, ctx_channel: int = CH_1X, res_channel: int = 32):
        super().__init__()
        self.first_conv = Conv2d(ctx_channel + res_channel, CH_1X, 3, stride=1, padding=1)
        self.unet_1 = UNet(CH_1X, CH_1X)
        self.unet_2 = UNet(CH_1X, CH_1X)
        self.recon_conv = Conv2d(CH_1X, 3, 3, stride=1, padding=1)

    def forward(self, ctx: torch.Tensor, res: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feature = self.unet_2(self.unet_1(self.first_conv(torch.cat((ctx, res), dim=1))))
        return feature, self.recon_conv(feature)
