"""The four-part spatial prior (DCVC-DC) as a latent codec: a latent is coded in 4 steps.

The latent's channels are split in 4 quarter groups and its pixels in the 4 positions of
each 2x2 block. In step k, group g codes the pixels of checkerboard position
``SCHEDULE[k][g]``, so every step codes a quarter of the latent, spread over all groups and
positions. Before steps 1-3, the latent decoded so far refines the scales and means through
an adaptor (one per step) and a shared prior network. The same loop serves the three modes:
estimated bits (test path and training), compress and decompress. The residuals are coded with
a zero-mean Gaussian or Laplace scale-table model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

from ..entropy.coder import EntropyCoder
from ..entropy.quantization import quantize, rate_proxy
from ..entropy.scale_table import ScaleTableModel, scale_table_model
from ..nn.layers import DepthConvBlock
from ..nn.ops import Conv2d
from .base import LatentCodec

SCHEDULE = ((0, 1, 2, 3), (3, 2, 1, 0), (2, 3, 0, 1), (1, 0, 3, 2))
GROUPS = 4


def checkerboard_masks(height: int, width: int, dtype: torch.dtype, device: torch.device) -> List[torch.Tensor]:
    """Masks [1, 1, H, W] of the 4 positions of each 2x2 block: (0,0), (0,1), (1,0), (1,1)."""
    rows = torch.arange(height, device=device)[:, None] % 2
    cols = torch.arange(width, device=device)[None, :] % 2
    return [((rows == p // 2) & (cols == p % 2)).to(dtype)[None, None] for p in range(4)]


@dataclass
class FourPartLatent:
    """A latent y [B, C, H, W] coded with the four-part prior (a CodedLatent).

    y_hat: the dequantized latent; y_q: the integer residuals (y / step - mean, rounded; in
    training with a noisy rate, the noisy ones); scales: the scale of each residual (its entropy
    model); steps: per coding step, the residuals and scales entropy-coded, each [B, C/4, H, W].
    """

    y_hat: torch.Tensor
    y_q: torch.Tensor
    scales: torch.Tensor
    steps: List[Tuple[torch.Tensor, torch.Tensor]]
    model: ScaleTableModel

    def bits(self) -> torch.Tensor:
        return self.model.bits(self.y_q, self.scales).sum()

    def write(self, coder: EntropyCoder) -> None:
        for y_q, scales in self.steps:
            self.model.encode(coder, y_q, scales)


def spatial_prior(channel: int, gated: bool) -> nn.Sequential:
    """The shared prior network of steps 1-3: 3C -> 2C channels (scales and means). gated: the
    I-frame codec's (gated DepthConv blocks, narrowing early), else the P-frame codecs'."""
    if gated:
        return nn.Sequential(DepthConvBlock(channel * 3, channel * 3, gated=True),
                             DepthConvBlock(channel * 3, channel * 2, gated=True),
                             DepthConvBlock(channel * 2, channel * 2, gated=True))
    return nn.Sequential(DepthConvBlock(channel * 3, channel * 3), DepthConvBlock(channel * 3, channel * 3),
                         DepthConvBlock(channel * 3, channel * 2))


class FourPartLatentCodec(LatentCodec):
    """Codes a `channel`-channel latent y [B, C, H, W] given its prior's parameters
    [B, 3C, H, W] (quantization step, scales and means of step 0).

    prefix: the latent's checkpoint prefix (`y`, `mv_y`): the adaptors are
    `<prefix>_spatial_prior_adaptor_{1,2,3}` and the prior network `<prefix>_spatial_prior` in
    the owner's checkpoint. distribution: 'gaussian' or 'laplace'; gated: see `spatial_prior`.
    """

    def __init__(self, channel: int, prefix: str, distribution: str, gated: bool = False):
        names = {f"adaptor_{k}": f"{prefix}_spatial_prior_adaptor_{k}" for k in (1, 2, 3)}
        super().__init__({**names, "prior": f"{prefix}_spatial_prior"})
        self.adaptor_1 = Conv2d(channel * 4, channel * 3, 1)
        self.adaptor_2 = Conv2d(channel * 4, channel * 3, 1)
        self.adaptor_3 = Conv2d(channel * 4, channel * 3, 1)
        self.prior = spatial_prior(channel, gated)
        self.model = scale_table_model(distribution)
        self._masks: Dict[tuple, List[torch.Tensor]] = {}

    def update(self, force: bool = False) -> None:
        """Build the scale-table model's tables once: they depend on no parameter (and are shared
        by every latent codec of the distribution), so `force` has nothing to rebuild."""
        self.model.update()

    def _get_masks(self, ref: torch.Tensor) -> List[torch.Tensor]:
        key = (ref.shape[-2], ref.shape[-1], ref.dtype, ref.device)
        if key not in self._masks:
            self._masks[key] = checkerboard_masks(ref.shape[-2], ref.shape[-1], ref.dtype, ref.device)
        return self._masks[key]

    def _run(self, params: torch.Tensor, code_step: Callable) -> torch.Tensor:
        """The 4-step loop; code_step(scales, means, masks) returns each group's y_hat part.

        Returns the quantized latent in units of the quantization step.
        """
        _, scales, means = params.chunk(3, 1)
        scales, means = scales.chunk(GROUPS, 1), means.chunk(GROUPS, 1)
        all_masks = self._get_masks(params)
        adaptors = (self.adaptor_1, self.adaptor_2, self.adaptor_3)
        y_hat_so_far = None
        for k, positions in enumerate(SCHEDULE):
            if k > 0:
                refined = self.prior(adaptors[k - 1](torch.cat((y_hat_so_far, params), dim=1))).chunk(2 * GROUPS, 1)
                scales, means = refined[:GROUPS], refined[GROUPS:]
            parts = code_step(scales, means, [all_masks[p] for p in positions])
            step_hat = torch.cat(parts, dim=1)
            y_hat_so_far = step_hat if y_hat_so_far is None else y_hat_so_far + step_hat
        return y_hat_so_far

    @staticmethod
    def quant_step(params: torch.Tensor) -> torch.Tensor:
        """The per-element quantization step (floored at 0.5) from the prior's parameters."""
        return torch.clamp_min(params.chunk(3, 1)[0], 0.5)

    def forward(self, y: torch.Tensor, params: torch.Tensor) -> FourPartLatent:
        """Quantize y [B, C, H, W] step by step (test path, training and compress). In train
        mode: straight-through rounding for y_hat, and the rate estimated on the residuals that
        `noisy_rate` chooses (see `sevc.entropy.quantization`)."""
        quant_step = self.quant_step(params)
        y_groups = (y / quant_step).chunk(GROUPS, 1)
        q_parts = [[] for _ in range(GROUPS)]
        s_parts = [[] for _ in range(GROUPS)]
        steps = []

        def code_step(scales, means, masks):
            hats, step_q, step_s = [], 0, 0
            for g, mask in enumerate(masks):
                scales_hat = scales[g] * mask
                means_hat = means[g] * mask
                residual = (y_groups[g] - means_hat) * mask
                y_q = quantize(residual, self.training)
                hats.append(y_q + means_hat)
                y_q = rate_proxy(residual, y_q, self.noisy, mask)
                q_parts[g].append(y_q)
                s_parts[g].append(scales_hat)
                step_q = step_q + y_q
                step_s = step_s + scales_hat
            steps.append((step_q, step_s))
            return hats

        y_hat = self._run(params, code_step)
        y_q = torch.cat([sum(parts) for parts in q_parts], dim=1)
        scales = torch.cat([sum(parts) for parts in s_parts], dim=1)
        return FourPartLatent(y_hat * quant_step, y_q, scales, steps, self.model)

    def decode(self, coder: EntropyCoder, params: torch.Tensor) -> torch.Tensor:
        """Read the latent y_hat [B, C, H, W] coded with the prior's parameters `params`."""

        def code_step(scales, means, masks):
            step_scales = sum(s * m for s, m in zip(scales, masks))
            y_q = self.model.decode(coder, step_scales)
            return [(y_q + means[g]) * mask for g, mask in enumerate(masks)]

        return self._run(params, code_step) * self.quant_step(params)
