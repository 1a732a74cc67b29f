"""What every SEVC sub-codec (I-frame, base layer, enhancement layer) shares: its entropy models,
its rANS coder, its per-rate feature scales, and the shape of its results."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Optional, Tuple, TypeVar

import torch
from torch import nn

from ..entropy.bit_estimator import BitEstimator
from ..entropy.coder import EntropyCoder
from ..entropy.scale_table import ScaleTableModel
from ..nn.padding import HYPER_INPUT_MULTIPLE, pad_to_multiple
from ..numerics import in_mode_dtype
from .rate import Rate

State = TypeVar("State")


@dataclass(frozen=True)
class Estimated(Generic[State]):
    """A frame coded with estimated bits (the test path, and training in train mode): the codec's
    new state (reconstruction or decoded picture buffer) and the bits of the batch, a 0-d tensor."""

    state: State
    bits: torch.Tensor


@dataclass(frozen=True)
class Compressed(Generic[State]):
    """A frame coded into rANS payloads: the codec's new state, as its decoder will have it, and
    the payloads (bytes), one per layer coded."""

    state: State
    payloads: Tuple[bytes, ...]


class EntropyCodedModel(nn.Module):
    """Base of the I-frame, base-layer and enhancement-layer codecs.

    distribution: 'laplace' or 'gaussian', the model of the latent residuals.
    z_channel / mv_z_channel: channels of the factorized hyperprior latents (None: no such latent).
    ec_thread, stream_part: rANS coder options (background encoding, parallel stream parts).
    """

    def __init__(self, distribution: str, z_channel: Optional[int] = None,
                 mv_z_channel: Optional[int] = None, ec_thread: bool = False, stream_part: int = 1):
        super().__init__()
        self.bit_estimator_z = BitEstimator(z_channel) if z_channel else None
        self.bit_estimator_z_mv = BitEstimator(mv_z_channel) if mv_z_channel else None
        self.latent_model = ScaleTableModel(distribution)
        self.ec_thread = ec_thread
        self.stream_part = stream_part
        self.entropy_coder: Optional[EntropyCoder] = None

    def update(self, force: bool = False) -> None:
        """Create the rANS coder and build the entropy coding tables (needed before compress)."""
        self.entropy_coder = EntropyCoder(self.ec_thread, self.stream_part)
        self.latent_model.update(force)
        for estimator in (self.bit_estimator_z, self.bit_estimator_z_mv):
            if estimator is not None:
                estimator.update(force)

    def add_q_scales(self, prefix: str, enc_ch: int, dec_ch: int, anchor_num: int) -> None:
        """Register `<prefix>q_basic_enc`, `q_scale_enc`, `q_basic_dec`, `q_scale_dec` (checkpoint
        names): per-channel feature scales [1, C, 1, 1] and per-anchor multipliers [anchors, 1, 1, 1]."""
        for side, ch in (("enc", enc_ch), ("dec", dec_ch)):
            self.register_parameter(f"{prefix}q_basic_{side}", nn.Parameter(torch.ones((1, ch, 1, 1))))
            self.register_parameter(f"{prefix}q_scale_{side}", nn.Parameter(torch.ones((anchor_num, 1, 1, 1))))

    def q_scales(self, prefix: str, rate: Rate) -> Tuple[torch.Tensor, torch.Tensor]:
        """The encoder's and the decoder's feature scales [1, C, 1, 1] of the `prefix` transform at `rate`:
        q_basic times the rate's q_scale (in float64 in portable mode)."""
        return tuple(in_mode_dtype(getattr(self, f"{prefix}q_basic_{side}"))
                     * rate.select(getattr(self, f"{prefix}q_scale_{side}")) for side in ("enc", "dec"))

    @property
    def device(self) -> torch.device:
        """Where the codec's parameters are."""
        return next(self.parameters()).device

    def coder(self) -> EntropyCoder:
        if self.entropy_coder is None:
            raise RuntimeError(f"{type(self).__name__}.update() must be called before compress/decompress")
        return self.entropy_coder

    @staticmethod
    def pad_latent(y: torch.Tensor) -> torch.Tensor:
        """y [B, C, h, w] replicate-padded to multiples of 4 (the input of a hyperprior encoder)."""
        return pad_to_multiple(y, HYPER_INPUT_MULTIPLE, mode="replicate")
