"""Convolutional building blocks shared by the I-frame, base-layer and enhancement-layer codecs.

Attribute names are part of the checkpoint format (state_dict keys) and follow the
official DCVC-DC / SEVC checkpoints.
"""
from __future__ import annotations

import torch
from torch import nn

from .ops import Conv2d


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> Conv2d:
    return Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> Conv2d:
    return Conv2d(in_ch, out_ch, kernel_size=1, stride=stride)


def subpel_conv(in_ch: int, out_ch: int, r: int = 2, kernel_size: int = 1) -> nn.Sequential:
    """Convolution to out_ch * r^2 channels then pixel shuffle: x r upsampling."""
    return nn.Sequential(
        Conv2d(in_ch, out_ch * r ** 2, kernel_size=kernel_size, padding=kernel_size // 2),
        nn.PixelShuffle(r),
    )


class ResidualBlockWithStride(nn.Module):
    """Two 3x3 convolutions, the first strided, with a strided 1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=stride)
        self.leaky_relu = nn.LeakyReLU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.leaky_relu2 = nn.LeakyReLU(negative_slope=0.1)
        self.downsample = conv1x1(in_ch, out_ch, stride=stride) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.leaky_relu2(self.conv2(self.leaky_relu(self.conv1(x))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class ResidualBlockUpsample(nn.Module):
    """x r upsampling residual block: sub-pixel 1x1 conv + 3x3 conv, sub-pixel shortcut."""

    def __init__(self, in_ch: int, out_ch: int, upsample: int = 2):
        super().__init__()
        self.subpel_conv = subpel_conv(in_ch, out_ch, upsample)
        self.leaky_relu = nn.LeakyReLU()
        self.conv = conv3x3(out_ch, out_ch)
        self.leaky_relu2 = nn.LeakyReLU(negative_slope=0.1)
        self.upsample = subpel_conv(in_ch, out_ch, upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.leaky_relu2(self.conv(self.leaky_relu(self.subpel_conv(x))))
        return out + self.upsample(x)


class ResBlock(nn.Module):
    """Pre-activation residual block of two 3x3 convolutions (optionally a bottleneck)."""

    def __init__(self, channel: int, slope: float = 0.01, end_with_relu: bool = False,
                 bottleneck: bool = False):
        super().__init__()
        mid = channel // 2 if bottleneck else channel
        self.first_layer = nn.LeakyReLU(negative_slope=slope)
        self.conv1 = Conv2d(channel, mid, 3, padding=1)
        self.relu = nn.LeakyReLU(negative_slope=slope)
        self.conv2 = Conv2d(mid, channel, 3, padding=1)
        self.last_layer = self.relu if end_with_relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(self.first_layer(x))))
        return x + self.last_layer(out)


class DepthConv(nn.Module):
    """1x1 conv, depthwise 3x3 conv, 1x1 conv, with a (strided) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, depth_kernel: int = 3, stride: int = 1,
                 slope: float = 0.01):
        super().__init__()
        self.conv1 = nn.Sequential(
            Conv2d(in_ch, in_ch, 1, stride=stride),
            nn.LeakyReLU(negative_slope=slope),
        )
        self.depth_conv = Conv2d(in_ch, in_ch, depth_kernel, padding=depth_kernel // 2, groups=in_ch)
        self.conv2 = Conv2d(in_ch, out_ch, 1)
        self.adaptor = None
        if stride != 1:
            self.adaptor = Conv2d(in_ch, out_ch, 2, stride=2)
        elif in_ch != out_ch:
            self.adaptor = Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.adaptor(x) if self.adaptor is not None else x
        return self.conv2(self.depth_conv(self.conv1(x))) + identity


class ConvFFN(nn.Module):
    """Residual pointwise feed-forward: 1x1 expand (x4, capped at 1024), 1x1 project."""

    def __init__(self, in_ch: int, slope: float = 0.1):
        super().__init__()
        hidden = max(min(in_ch * 4, 1024), in_ch * 2)
        self.conv = nn.Sequential(
            Conv2d(in_ch, hidden, 1),
            nn.LeakyReLU(negative_slope=slope),
            Conv2d(hidden, in_ch, 1),
            nn.LeakyReLU(negative_slope=slope),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class GatedConvFFN(nn.Module):
    """Residual gated pointwise feed-forward: x1 * LeakyReLU(x2), then a 1x1 projection."""

    def __init__(self, in_ch: int):
        super().__init__()
        hidden = in_ch * 2
        self.conv = Conv2d(in_ch, hidden * 2, 1)
        self.conv_out = Conv2d(hidden, in_ch, 1)
        self.relu = nn.LeakyReLU(negative_slope=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.conv(x).chunk(2, 1)
        return x + self.conv_out(x1 * self.relu(x2))


class DepthConvBlock(nn.Module):
    """DCVC-DC's basic block: a DepthConv then a feed-forward (plain, or gated if `gated`)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, gated: bool = False):
        super().__init__()
        self.block = nn.Sequential(
            DepthConv(in_ch, out_ch, stride=stride),
            GatedConvFFN(out_ch) if gated else ConvFFN(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNet(nn.Module):
    """Two-level U-Net of DepthConvBlocks (gated ones if `gated`), spatial size kept.

    The input's height and width must be multiples of 4.
    """

    def __init__(self, in_ch: int = 64, out_ch: int = 64, gated: bool = False, refine_blocks: int = 4):
        super().__init__()

        def block(i: int, o: int) -> DepthConvBlock:
            return DepthConvBlock(i, o, gated=gated)

        self.max_pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv1 = block(in_ch, 32)
        self.conv2 = block(32, 64)
        self.conv3 = block(64, 128)
        self.context_refine = nn.Sequential(*[block(128, 128) for _ in range(refine_blocks)])
        self.up3 = subpel_conv(128, 64, 2)
        self.up_conv3 = block(128, 64)
        self.up2 = subpel_conv(64, 32, 2)
        self.up_conv2 = block(64, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(self.max_pool(x1))
        x3 = self.context_refine(self.conv3(self.max_pool(x2)))
        d3 = self.up_conv3(torch.cat((x2, self.up3(x3)), dim=1))
        return self.up_conv2(torch.cat((x1, self.up2(d3)), dim=1))
