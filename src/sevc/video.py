"""Coding whole sequences: I-frames, two-layer P-frames, feature resets, the decoded picture buffers.

`VideoCodec` drives the I-frame model and the SEVC P-frame model the way the published
test, encoder and decoder scripts do, in three modes: estimated bits (`evaluate`), real
encoding (`encode`) and decoding (`decode`), full or base-only ("fast"/skim).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence

import torch

from .errors import BitstreamError
from .intra import IntraNoAR
from .padding import crop
from .sevc_model import SEVC, intra_base_dpb, intra_enhancement_dpb


@dataclass
class EvaluatedFrame:
    """Test-path result of one frame: estimated bits and the clamped, cropped reconstruction [1, 3, H, W]."""

    is_intra: bool
    bits: float
    recon: torch.Tensor


@dataclass
class CodedFrame:
    """One coded frame: its payloads (I-frame: [intra]; P-frame: [base] or [base, enhancement])
    and the reconstructions the decoder will produce, in [0, 1]: full [1, 3, H, W] (None in
    fast mode) and skim [1, 3, H // 4, W // 4]."""

    is_intra: bool
    payloads: List[bytes]
    full: Optional[torch.Tensor]
    skim: torch.Tensor


class VideoCodec:
    """SEVC over a sequence. intra_period <= 0: only the first frame is an I-frame.

    refresh_interval: the propagated features are reset every `refresh_interval` frames
    (on the frame after a multiple of it), as the published scripts do.
    """

    def __init__(self, i_frame: IntraNoAR, p_frame: SEVC, intra_period: int = -1, refresh_interval: int = 32):
        self.i_frame = i_frame
        self.p_frame = p_frame
        self.intra_period = intra_period
        self.refresh_interval = refresh_interval

    def is_intra(self, index: int) -> bool:
        return index == 0 or (self.intra_period > 0 and index % self.intra_period == 0)

    def _refresh(self, index: int, *dpbs) -> None:
        if index % self.refresh_interval == 1:
            for dpb in dpbs:
                if dpb is not None:
                    dpb["ref_feature"] = None

    def _skim(self, base_dpb, height: int, width: int) -> torch.Tensor:
        ratio = self.p_frame.ratio
        return crop(base_dpb["ref_frame"], height // ratio, width // ratio).clamp(0, 1)

    @torch.no_grad()
    def evaluate(self, frames: Iterable[torch.Tensor], q_in_ckpt: bool, i_q_index: int,
                 p_q_index: Optional[int] = None) -> Iterator[EvaluatedFrame]:
        """Test path (estimated bits), frames [1, 3, H, W] in [0, 1]; yields one result per frame.

        As in the published test script, the reconstruction is clamped in place, so the
        enhancement layer's next reference is the clamped frame.
        """
        p_q_index = i_q_index if p_q_index is None else p_q_index
        base_dpb = dpb = None
        for index, x in enumerate(frames):
            height, width = x.shape[2:]
            if self.is_intra(index):
                result = self.i_frame(IntraNoAR.pad_frame(x), q_in_ckpt, i_q_index)
                base_dpb = intra_base_dpb(result["x_hat"], self.p_frame.ratio)
                dpb = intra_enhancement_dpb(result["x_hat"])
                bits = result["bit"].item()
            else:
                self._refresh(index, base_dpb, dpb)
                frame_index = (index % self.refresh_interval) % 4
                base_dpb, dpb, bits = self.p_frame(x, base_dpb, dpb, q_in_ckpt, p_q_index, frame_index)
            recon = dpb["ref_frame"].clamp_(0, 1)
            yield EvaluatedFrame(self.is_intra(index), bits, crop(recon, height, width))

    @torch.no_grad()
    def encode(self, frames: Iterable[torch.Tensor], q_index: int, fast: bool = False) -> Iterator[CodedFrame]:
        """Encode frames [1, 3, H, W] at fine level q_index (0..63); fast: base layer only."""
        base_dpb = dpb = None
        for index, x in enumerate(frames):
            height, width = x.shape[2:]
            if self.is_intra(index):
                encoded = self.i_frame.compress(IntraNoAR.pad_frame(x), False, q_index)
                base_dpb = intra_base_dpb(encoded["x_hat"], self.p_frame.ratio)
                dpb = None if fast else intra_enhancement_dpb(encoded["x_hat"])
                payloads = [encoded["bit_stream"]]
            else:
                self._refresh(index, base_dpb, dpb)
                base_dpb, dpb, payloads = self.p_frame.compress(x, base_dpb, dpb, q_index, index)
            full = None if fast else crop(dpb["ref_frame"], height, width).clamp(0, 1)
            yield CodedFrame(self.is_intra(index), payloads, full, self._skim(base_dpb, height, width))

    @torch.no_grad()
    def decode(self, frames: Iterable[Sequence[bytes]], height: int, width: int, q_index: int,
               fast: bool = False, skim_only: bool = False) -> Iterator[CodedFrame]:
        """Decode payloads per frame (as `encode` made them) of a height x width sequence.

        fast: the stream is a fast-mode (base only) stream; skim_only: decode only the base
        layer of a full stream. Yields the reconstructions (payloads left empty).
        """
        base_only = fast or skim_only
        base_dpb = dpb = None
        for index, payloads in enumerate(frames):
            if self.is_intra(index):
                x_hat = self.i_frame.decompress(payloads[0], height, width, False, q_index)["x_hat"]
                base_dpb = intra_base_dpb(x_hat, self.p_frame.ratio)
                dpb = None if base_only else intra_enhancement_dpb(x_hat)
            else:
                self._refresh(index, base_dpb, dpb)
                if base_only:
                    base_dpb = self.p_frame.decompress_base(payloads[0], height, width, base_dpb, q_index, index,
                                                            fast=fast)
                else:
                    base_dpb, dpb = self.p_frame.decompress(payloads, height, width, base_dpb, dpb, q_index, index)
            full = None if base_only else crop(dpb["ref_frame"], height, width).clamp(0, 1)
            skim = self._skim(base_dpb, height, width)
            if not all(bool(torch.isfinite(x).all()) for x in (full, skim) if x is not None):
                raise BitstreamError(f"frame {index} decodes to values that are not finite: the stream is corrupted")
            yield CodedFrame(self.is_intra(index), [], full, skim)
