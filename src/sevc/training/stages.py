"""The training stages of the paper and their training-time forward over a clip.

| stage | trains | objective |
|---|---|---|
| `i_frame` | the I-frame codec (IntraNoAR) | lambda * D + R on single frames |
| `base` | the base layer (`BL_codec.*`) on the 4x-downsampled clip | Eq. 4, first part |
| `augment` | everything of the P-frame model but the base layer (MFCA, latent prior, EL) | Eq. 4, second part |
| `joint` | the whole P-frame model | Eq. 5 |

P-frame stages code clips in cascade: frame 0 with the (frozen) I-frame codec, every later
frame with the P-frame model from the model's own reconstructions, as at inference. Trained
modules run in train mode (straight-through rounding, noisy rates, see
`sevc.quantization`); frozen ones in eval mode, so they behave exactly as at inference.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

import torch
from torch import nn

from ..intra import IntraNoAR
from ..sevc_model import FRAME_PAD, SEVC, base_input, intra_base_dpb, intra_enhancement_dpb
from .losses import FrameTerms, Objective, mse

STAGES = ("i_frame", "base", "augment", "joint")
OBJECTIVES = {"i_frame": "image", "base": "base", "augment": "augment", "joint": "joint"}
BASE_PREFIX = "BL_codec."


# Entries of the official P-frame checkpoint that no computation uses (the enhancement layer has
# no hyperprior; the Swin fusion's first convolutions are never called): never trained.
UNUSED_ENTRIES = ("EL_codec.bit_estimator_z.", "latent_ILP.fusion.conv_first.", "latent_ILP.fusion.conv_first_feat.")


def trained_names(stage: str, model: nn.Module) -> List[str]:
    """Names of the parameters `stage` trains in `model` (the I-frame model for i_frame, else SEVC)."""
    names = [name for name, _ in model.named_parameters() if not name.startswith(UNUSED_ENTRIES)]
    if stage in ("i_frame", "joint"):
        return names
    if stage == "base":
        return [n for n in names if n.startswith(BASE_PREFIX)]
    if stage == "augment":
        return [n for n in names if not n.startswith(BASE_PREFIX)]
    raise ValueError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)})")


class StageModel(nn.Module):
    """The models of a stage; forward(clip, anchor) -> (loss, per-frame terms).

    clip [B, T, 3, h, w] in [0, 1] with h, w multiples of 16 (T = 1 is enough for i_frame);
    anchor: the q anchor (0..3) and with it the lambda of this batch. detach_every: cut the
    gradient through the references every that many P-frames (0: never), which bounds the
    memory of long cascades.
    """

    def __init__(self, stage: str, i_frame: IntraNoAR, p_frame: SEVC, objective: Objective, detach_every: int = 0):
        super().__init__()
        self.detach_every = detach_every
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)})")
        self.stage = stage
        self.i_frame = i_frame
        self.p_frame = p_frame
        self.objective = objective
        names = set(trained_names(stage, self.trained))
        for module in (i_frame, p_frame):
            for name, parameter in module.named_parameters():
                parameter.requires_grad_(module is self.trained and name in names)

    @property
    def trained(self) -> nn.Module:
        """The model the stage trains: the I-frame model for i_frame, else the P-frame model."""
        return self.i_frame if self.stage == "i_frame" else self.p_frame

    def train(self, mode: bool = True) -> "StageModel":
        """Train mode for what the stage trains, eval mode for everything frozen."""
        super().train(False)
        if mode:
            self.trained.train()
            if self.stage == "augment":
                self.p_frame.BL_codec.eval()
        return self

    def trained_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.trained.parameters() if p.requires_grad)

    def forward(self, clip: torch.Tensor, anchor: int) -> Tuple[torch.Tensor, List[FrameTerms]]:
        if clip.shape[-2] % FRAME_PAD or clip.shape[-1] % FRAME_PAD:
            raise ValueError(f"training crops must be multiples of {FRAME_PAD}, got {tuple(clip.shape[-2:])}")
        terms = self._intra(clip[:, 0], anchor) if self.stage == "i_frame" else self._cascade(clip, anchor)
        return self.objective.loss(terms, anchor), terms

    def _intra(self, x: torch.Tensor, anchor: int) -> List[FrameTerms]:
        out = self.i_frame(x, True, anchor)
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        return [FrameTerms(0, distortion=mse(out["x_hat"], x), rate=out["bit"] / pixels)]

    def _cascade(self, clip: torch.Tensor, anchor: int) -> List[FrameTerms]:
        """Frames are multiples of 16 (checked in forward): no padding, the base input is the
        downsampled frame itself."""
        pixels = clip.shape[0] * clip.shape[-2] * clip.shape[-1]
        with torch.no_grad():
            x_hat = self.i_frame(clip[:, 0], True, anchor)["x_hat"].clamp(0, 1)
        base_dpb, dpb = intra_base_dpb(x_hat, self.p_frame.ratio), intra_enhancement_dpb(x_hat)
        terms = []
        for t in range(1, clip.shape[1]):
            if self.detach_every and t > 1 and (t - 1) % self.detach_every == 0:
                base_dpb, dpb = detached(base_dpb), detached(dpb)
            x = clip[:, t]
            target = base_input(x, self.p_frame.ratio)
            base_dpb, base_bits = self.p_frame.BL_codec(target, base_dpb, True, anchor, t % 4)
            frame = FrameTerms(t, base_distortion=mse(base_dpb["ref_frame"], target),
                               base_rate=base_bits / (clip.shape[0] * target.shape[-2] * target.shape[-1]))
            if self.stage != "base":
                dpb, bits = self.p_frame.enhance(x, base_dpb, dpb, True, anchor, t % 4)
                dpb = {**dpb, "ref_frame": dpb["ref_frame"].clamp(0, 1)}
                frame.distortion = mse(dpb["ref_frame"], x)
                frame.rate = (base_bits + bits) / pixels
            terms.append(frame)
        return terms


def detached(dpb: Dict) -> Dict:
    """A dpb whose tensors (also inside lists) are cut from the autograd graph."""
    def cut(value):
        if isinstance(value, torch.Tensor):
            return value.detach()
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value

    return {key: cut(value) for key, value in dpb.items()}
