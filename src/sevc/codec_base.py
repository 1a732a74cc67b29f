"""What every SEVC sub-codec shares: its entropy models, its rANS coder and latent padding."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .entropy_models import BitEstimator, EntropyCoder, ScaleTableModel
from .padding import pad_to_multiple
from .quantization import q_scale

LATENT_PAD = 4  # hyperprior encoders see the latent padded to a multiple of 4


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

    def add_q_params(self, prefix: str, enc_ch: int, dec_ch: int, anchor_num: int) -> None:
        """Register `<prefix>q_basic_enc`, `q_scale_enc`, `q_basic_dec`, `q_scale_dec` (checkpoint names):
        per-channel quantization steps [1, C, 1, 1] and the per-rate scales [anchor_num, 1, 1, 1]."""
        for side, ch in (("enc", enc_ch), ("dec", dec_ch)):
            self.register_parameter(f"{prefix}q_basic_{side}", nn.Parameter(torch.ones((1, ch, 1, 1))))
            self.register_parameter(f"{prefix}q_scale_{side}", nn.Parameter(torch.ones((anchor_num, 1, 1, 1))))

    def q_step_pair(self, prefix: str, q_in_ckpt: bool, q_index: int):
        """(encoder, decoder) quantization steps of the `prefix` parameters for a rate."""
        return tuple(getattr(self, f"{prefix}q_basic_{side}")
                     * q_scale(getattr(self, f"{prefix}q_scale_{side}"), q_in_ckpt, q_index)
                     for side in ("enc", "dec"))

    def coder(self) -> EntropyCoder:
        if self.entropy_coder is None:
            raise RuntimeError(f"{type(self).__name__}.update() must be called before compress/decompress")
        return self.entropy_coder

    @staticmethod
    def pad_latent(y: torch.Tensor) -> torch.Tensor:
        """y [B, C, h, w] replicate-padded to multiples of 4 (input of a hyperprior encoder)."""
        return pad_to_multiple(y, LATENT_PAD, mode="replicate")
