"""The training stages of the paper and their training-time forward over a clip.

| stage | trains | objective |
|---|---|---|
| `i_frame` | the I-frame codec (IntraNoAR) | lambda * D + R on single frames |
| `base` | the base layer (`BL_codec.*`) on the 4x-downsampled clip | Eq. 4, first part |
| `augment` | everything of the P-frame model but the base layer (MFCA, latent prior, EL) | Eq. 4, second part |
| `joint` | the whole P-frame model | Eq. 5 |

P-frame stages code clips in cascade: frame 0 with the (frozen) I-frame codec, every later
frame with the P-frame model from the model's own reconstructions, as at inference. Trained
modules run in train mode (straight-through rounding; rates on noisy or rounded latents, see
`sevc.entropy.quantization` and `sevc.latent_codecs.use_noisy_rate`); frozen ones in eval mode, so they
behave exactly as at inference.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Iterator, List, Tuple

import torch
from torch import nn

from ..models.buffers import Buffers
from ..models.intra import IntraNoAR
from ..models.rate import Rate
from ..models.sevc import SEVC, base_input
from ..models.temporal_context import FEATURE_ADAPTOR_FOR_INDEX
from ..nn.padding import FRAME_MULTIPLE
from ..weights.checkpoint import named_parameters
from .losses import FrameTerms, Objective, mse

STAGES = ("i_frame", "base", "augment", "joint")
OBJECTIVES = {"i_frame": "image", "base": "base", "augment": "augment", "joint": "joint"}


def unused_modules(p_frame: SEVC) -> List[nn.Module]:
    """Modules of the official P-frame checkpoint that no computation uses (the enhancement layer
    has no hyperprior; the Swin fusion's first convolutions are never called): never trained."""
    fusion = p_frame.latent_ILP.fusion
    return [p_frame.EL_codec.bit_estimator_z, fusion.conv_first, fusion.conv_first_feat]


def positions_left_untrained(sequence_length: int) -> List[int]:
    """Frame positions (since the I-frame) whose P-frame feature adaptor clips of `sequence_length`
    frames never train: a P-frame after a P-frame picks its adaptor by position
    (FEATURE_ADAPTOR_FOR_INDEX), and positions 2 to 5 use them all (the next ones repeat)."""
    trained = {FEATURE_ADAPTOR_FOR_INDEX[t % 4] for t in range(2, sequence_length)}
    return [t for t in range(2, 6) if FEATURE_ADAPTOR_FOR_INDEX[t % 4] not in trained]


def trained_names(stage: str, model: nn.Module) -> List[str]:
    """Checkpoint names of the parameters `stage` trains in `model` (the I-frame model for i_frame,
    else SEVC)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)})")
    if stage == "i_frame":
        return list(named_parameters(model))
    unused = {id(p) for module in unused_modules(model) for p in module.parameters()}
    base = {id(p) for p in model.BL_codec.parameters()}
    wanted = {"joint": lambda p: True, "base": lambda p: id(p) in base, "augment": lambda p: id(p) not in base}[stage]
    return [name for name, p in named_parameters(model).items() if id(p) not in unused and wanted(p)]


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
            for name, parameter in named_parameters(module).items():
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
        if clip.shape[-2] % FRAME_MULTIPLE or clip.shape[-1] % FRAME_MULTIPLE:
            raise ValueError(f"training crops must be multiples of {FRAME_MULTIPLE}, got {tuple(clip.shape[-2:])}")
        rate = Rate.of_anchor(anchor)
        terms = self._intra(clip[:, 0], rate) if self.stage == "i_frame" else self._cascade(clip, rate)
        return self.objective.loss(terms, anchor), terms

    def _intra(self, x: torch.Tensor, rate: Rate) -> List[FrameTerms]:
        coded = self.i_frame(x, rate=rate)
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        return [FrameTerms(0, distortion=mse(coded.state, x), rate=coded.bits / pixels)]

    def _cascade(self, clip: torch.Tensor, rate: Rate) -> List[FrameTerms]:
        """Frames are multiples of 16 (checked in forward): no padding, the base input is the
        downsampled frame itself."""
        pixels = clip.shape[0] * clip.shape[-2] * clip.shape[-1]
        with torch.no_grad():
            x_hat = self.i_frame(clip[:, 0], rate=rate).state.clamp(0, 1)
        buffers = self.p_frame.buffers_after_intra(x_hat)
        terms = []
        for t in range(1, clip.shape[1]):
            if self.detach_every and t > 1 and (t - 1) % self.detach_every == 0:
                buffers = detached(buffers)
            x = clip[:, t]
            target = base_input(x, self.p_frame.ratio)
            base = self.p_frame.BL_codec(target, buffers.base, rate=rate, frame_index=t % 4)
            frame = FrameTerms(t, base_distortion=mse(base.state.frame, target),
                               base_rate=base.bits / (clip.shape[0] * target.shape[-2] * target.shape[-1]))
            enhancement = buffers.enhancement
            if self.stage != "base":
                enhanced = self.p_frame.enhance(x, base.state, enhancement, rate=rate, frame_index=t % 4)
                enhancement = replace(enhanced.state, frame=enhanced.state.frame.clamp(0, 1))
                frame.distortion = mse(enhancement.frame, x)
                frame.rate = (base.bits + enhanced.bits) / pixels
            buffers = Buffers(base.state, enhancement)
            terms.append(frame)
        return terms


def detached(buffers: Buffers) -> Buffers:
    """Buffers whose tensors are cut from the autograd graph."""
    def cut(value):
        if isinstance(value, torch.Tensor):
            return value.detach()
        if isinstance(value, tuple):
            return tuple(cut(v) for v in value)
        return value

    def cut_buffer(buffer):
        return replace(buffer, **{f.name: cut(getattr(buffer, f.name)) for f in fields(buffer)})

    return Buffers(cut_buffer(buffers.base), cut_buffer(buffers.enhancement))
