"""The four-part spatial prior (DCVC-DC): the latent is coded in 4 steps.

The latent's channels are split in 4 quarter groups and its pixels in the 4 positions of
each 2x2 block. In step k, group g codes the pixels of checkerboard position
``SCHEDULE[k][g]``, so every step codes a quarter of the latent, spread over all groups and
positions. Before steps 1-3, the latent decoded so far refines the scales and means through
an adaptor (one per step) and a shared prior network. The same loop serves the three modes:
estimated bits (test path), compress and decompress.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn

from ..nn.layers import DepthConvBlock
from ..nn.ops import Conv2d
from .quantization import quantize, rate_proxy

SCHEDULE = ((0, 1, 2, 3), (3, 2, 1, 0), (2, 3, 0, 1), (1, 0, 3, 2))
GROUPS = 4


def checkerboard_masks(height: int, width: int, dtype: torch.dtype, device: torch.device) -> List[torch.Tensor]:
    """Masks [1, 1, H, W] of the 4 positions of each 2x2 block: (0,0), (0,1), (1,0), (1,1)."""
    rows = torch.arange(height, device=device)[:, None] % 2
    cols = torch.arange(width, device=device)[None, :] % 2
    return [((rows == p // 2) & (cols == p % 2)).to(dtype)[None, None] for p in range(4)]


@dataclass
class PriorOutput:
    """Result of coding a latent y [B, C, H, W] with the four-part prior.

    y_hat: the dequantized latent; y_q: the integer residuals (y / step - mean, rounded);
    scales: the scale of each residual (its entropy model); steps: per coding step, the
    residuals and scales actually entropy-coded, each [B, C/4, H, W].
    """

    y_hat: torch.Tensor
    y_q: torch.Tensor
    scales: torch.Tensor
    steps: List[Tuple[torch.Tensor, torch.Tensor]]


def add_four_part_prior(owner: nn.Module, prefix: str, channel: int) -> "FourPartPrior":
    """The four-part prior of a `channel`-channel latent with DepthConv blocks (the P-frame codecs'),
    its modules registered on `owner` as `<prefix>_spatial_prior_adaptor_{1,2,3}` and
    `<prefix>_spatial_prior` (checkpoint names)."""
    adaptors = []
    for k in (1, 2, 3):
        adaptors.append(Conv2d(channel * 4, channel * 3, 1))
        setattr(owner, f"{prefix}_spatial_prior_adaptor_{k}", adaptors[-1])
    prior = nn.Sequential(DepthConvBlock(channel * 3, channel * 3), DepthConvBlock(channel * 3, channel * 3),
                          DepthConvBlock(channel * 3, channel * 2))
    setattr(owner, f"{prefix}_spatial_prior", prior)
    return FourPartPrior(adaptors, prior)


class FourPartPrior:
    """Runs the four-part prior with a codec's modules (which own the weights).

    common_params [B, 3C, H, W] stacks the quantization step, scales and means of step 0.
    """

    def __init__(self, adaptors: Sequence[nn.Module], prior: nn.Module):
        self.adaptors = adaptors
        self.prior = prior
        self._masks: Dict[tuple, List[torch.Tensor]] = {}

    def _get_masks(self, ref: torch.Tensor) -> List[torch.Tensor]:
        key = (ref.shape[-2], ref.shape[-1], ref.dtype, ref.device)
        if key not in self._masks:
            self._masks[key] = checkerboard_masks(ref.shape[-2], ref.shape[-1], ref.dtype, ref.device)
        return self._masks[key]

    def _run(self, common_params: torch.Tensor, code_step: Callable) -> torch.Tensor:
        """The 4-step loop; code_step(scales, means, masks) returns each group's y_hat part.

        Returns the quantized latent in units of the quantization step.
        """
        _, scales, means = common_params.chunk(3, 1)
        scales, means = scales.chunk(GROUPS, 1), means.chunk(GROUPS, 1)
        all_masks = self._get_masks(common_params)
        y_hat_so_far = None
        for k, positions in enumerate(SCHEDULE):
            if k > 0:
                params = torch.cat((y_hat_so_far, common_params), dim=1)
                params = self.prior(self.adaptors[k - 1](params)).chunk(2 * GROUPS, 1)
                scales, means = params[:GROUPS], params[GROUPS:]
            parts = code_step(scales, means, [all_masks[p] for p in positions])
            step_hat = torch.cat(parts, dim=1)
            y_hat_so_far = step_hat if y_hat_so_far is None else y_hat_so_far + step_hat
        return y_hat_so_far

    @staticmethod
    def quant_step(common_params: torch.Tensor) -> torch.Tensor:
        """The per-element quantization step (floored at 0.5) from the common params."""
        return torch.clamp_min(common_params.chunk(3, 1)[0], 0.5)

    def forward(self, y: torch.Tensor, common_params: torch.Tensor, training: bool = False) -> PriorOutput:
        """Quantize y [B, C, H, W] step by step (test path and compress).

        training: straight-through rounding for y_hat, and y_q the noisy residuals (the rate
        proxy, see `sevc.quantization`) instead of the rounded ones.
        """
        quant_step = self.quant_step(common_params)
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
                y_q = quantize(residual, training)
                hats.append(y_q + means_hat)
                y_q = rate_proxy(residual, y_q, training, mask)
                q_parts[g].append(y_q)
                s_parts[g].append(scales_hat)
                step_q = step_q + y_q
                step_s = step_s + scales_hat
            steps.append((step_q, step_s))
            return hats

        y_hat = self._run(common_params, code_step)
        y_q = torch.cat([sum(parts) for parts in q_parts], dim=1)
        scales = torch.cat([sum(parts) for parts in s_parts], dim=1)
        return PriorOutput(y_hat * quant_step, y_q, scales, steps)

    def decode(self, common_params: torch.Tensor, decode_residuals: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Decode the latent; decode_residuals(scales [B, C/4, H, W]) reads one step's residuals."""

        def code_step(scales, means, masks):
            step_scales = sum(s * m for s, m in zip(scales, masks))
            y_q = decode_residuals(step_scales)
            return [(y_q + means[g]) * mask for g, mask in enumerate(masks)]

        return self._run(common_params, code_step) * self.quant_step(common_params)
