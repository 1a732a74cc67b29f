"""Motion: SpyNet optical flow estimation and offset-diversity alignment (DCVC-DC)."""
from __future__ import annotations

import torch
from torch import nn

from ..nn.ops import Conv2d, sigmoid, tanh
from ..nn.resample import average_pool2x, flow_warp, upsample2x


class SpyNetLevel(nn.Module):
    """One SpyNet level: [frame, warped reference, flow] (8 ch) -> flow residual (2 ch)."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = Conv2d(8, 32, 7, 1, padding=3)
        self.conv2 = Conv2d(32, 64, 7, 1, padding=3)
        self.conv3 = Conv2d(64, 32, 7, 1, padding=3)
        self.conv4 = Conv2d(32, 16, 7, 1, padding=3)
        self.conv5 = Conv2d(16, 2, 7, 1, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = self.relu(conv(x))
        return self.conv5(x)


class SpyNet(nn.Module):
    """SpyNet optical flow, 4 pyramid levels: frames [N, 3, H, W], H and W multiples of 16."""

    levels = 4

    def __init__(self):
        super().__init__()
        self.moduleBasic = nn.ModuleList([SpyNetLevel() for _ in range(self.levels)])

    def forward(self, frame: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Flow [N, 2, H, W] that warps `reference` onto `frame`."""
        frames, references = [frame], [reference]
        for _ in range(self.levels - 1):
            frames.append(average_pool2x(frames[-1]))
            references.append(average_pool2x(references[-1]))
        coarsest = references[-1]
        flow = torch.zeros([frame.shape[0], 2, coarsest.shape[2] // 2, coarsest.shape[3] // 2],
                           dtype=frame.dtype, device=frame.device)
        for level, basic in enumerate(self.moduleBasic):
            flow_up = upsample2x(flow) * 2.0
            i = self.levels - 1 - level
            flow = flow_up + basic(torch.cat([frames[i], flow_warp(references[i], flow_up), flow_up], 1))
        return flow


class OffsetDiversity(nn.Module):
    """Offset-diversity alignment (DCVC-DC): 16 groups x 2 learned offsets around the flow.

    Aligns x [B, 48, H, W] using aux [B, 48 + 3 + 2, H, W] (warped feature, warped frame,
    flow) and the flow [B, 2, H, W]; H and W even.
    """

    def __init__(self, in_channel: int = 48, aux_feature_num: int = 48 + 3 + 2, offset_num: int = 2,
                 group_num: int = 16, max_residue_magnitude: float = 40, hidden: int = 64):
        super().__init__()
        self.offset_num = offset_num
        self.group_num = group_num
        self.max_residue_magnitude = max_residue_magnitude
        self.conv_offset = nn.Sequential(
            Conv2d(aux_feature_num, hidden, 3, 2, 1),
            nn.LeakyReLU(negative_slope=0.1),
            Conv2d(hidden, hidden, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            Conv2d(hidden, 3 * group_num * offset_num, 3, 1, 1),
        )
        self.fusion = Conv2d(in_channel * offset_num, in_channel, 1, 1, groups=group_num)

    def forward(self, x: torch.Tensor, aux_feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        o1, o2, mask = torch.chunk(upsample2x(self.conv_offset(aux_feature)), 3, dim=1)
        offsets = self.max_residue_magnitude * tanh(torch.cat((o1, o2), dim=1))
        offsets = offsets + flow.repeat(1, self.group_num * self.offset_num, 1, 1)
        copies = b * self.group_num * self.offset_num
        x = x.view(b * self.group_num, c // self.group_num, h, w).repeat(self.offset_num, 1, 1, 1)
        x = flow_warp(x, offsets.view(copies, 2, h, w)) * sigmoid(mask).view(copies, 1, h, w)
        return self.fusion(x.view(b, c * self.offset_num, h, w))
