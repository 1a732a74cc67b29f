"""Coding whole sequences: I-frames, two-layer P-frames and the decoded picture buffers, in the
three modes of the published scripts — estimated bits (`evaluate`, test.py), encoding (`encode`)
and decoding (`decode`; full, fast-mode streams, or the base layer only of a full stream)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

import torch

from ..errors import BitstreamError
from ..models.buffers import Buffers
from ..models.intra import IntraNoAR
from ..models.rate import Rate
from ..models.sevc import SEVC
from ..nn.padding import crop
from ..numerics import Numerics, Precision, at_least_float32, in_mode_dtype, use_numerics
from .schedule import FrameSchedule, FrameStep, Mode

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class EvaluatedFrame:
    """Test-path result of one frame: its estimated bits (a 0-d tensor) and the reconstruction
    [1, 3, H, W], clamped to [0, 1] and cropped to the frame size."""

    intra: bool
    bits: torch.Tensor
    recon: torch.Tensor


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame: its payloads (I-frame: intra; P-frame: base [, enhancement]) and the
    reconstructions its decoder will produce, in [0, 1]: full [1, 3, H, W] (None in fast mode)
    and skim [1, 3, H / 4, W / 4] (the base layer's)."""

    intra: bool
    payloads: Tuple[bytes, ...]
    full: Optional[torch.Tensor]
    skim: torch.Tensor


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: full [1, 3, H, W] (None when only the base layer is decoded) and skim
    [1, 3, H / 4, W / 4], in [0, 1]."""

    intra: bool
    full: Optional[torch.Tensor]
    skim: torch.Tensor


class VideoCodec:
    """SEVC over a sequence, frame by frame as the schedule says, in numerics mode `numerics`
    (see `sevc.numerics`; portable mode codes frames in float64, and its reconstructions are
    float64) and, in float numerics, at `precision` (bf16 / fp16: the models run under
    torch.autocast, the entropy models' likelihoods in float32; reconstructions are float32)."""

    def __init__(self, i_frame: IntraNoAR, p_frame: SEVC, schedule: FrameSchedule = FrameSchedule(),
                 numerics: Numerics = Numerics.FLOAT, precision: Precision = Precision.FP32):
        self.i_frame = i_frame
        self.p_frame = p_frame
        self.schedule = schedule
        self.numerics = Numerics(numerics)
        self.precision = Precision(precision)
        if self.numerics.portable and self.precision is not Precision.FP32:
            raise ValueError(f"{self.numerics} numerics has its own arithmetic; a precision applies to float numerics")

    def _run(self, items: Iterable[Item], mode: Mode, code_intra: Callable[[Item], Tuple[Buffers, Result]],
             code_inter: Callable[[Item, Buffers, int], Tuple[Buffers, Result]]
             ) -> Iterator[Tuple[Item, FrameStep, Buffers, Result]]:
        """The schedule over `items` (frames or payloads): code_intra(item) for I-frames,
        code_inter(item, buffers, frame_index) for P-frames (buffers refreshed where due)."""
        buffers: Optional[Buffers] = None
        for item, step in zip(items, self.schedule.steps(mode)):
            with use_numerics(self.numerics), self.precision.autocast(self.i_frame.device.type):
                if step.intra:
                    buffers, result = code_intra(item)
                else:
                    buffers, result = code_inter(item, buffers.refreshed() if step.refresh else buffers,
                                                 step.frame_index)
            yield item, step, buffers, result

    def _skim(self, buffers: Buffers, height: int, width: int) -> torch.Tensor:
        ratio = self.p_frame.ratio
        return at_least_float32(crop(buffers.base.frame, height // ratio, width // ratio).clamp(0, 1))

    @staticmethod
    def _full(buffers: Buffers, height: int, width: int) -> Optional[torch.Tensor]:
        if buffers.enhancement is None:
            return None
        return at_least_float32(crop(buffers.enhancement.frame, height, width).clamp(0, 1))

    @torch.no_grad()
    def evaluate(self, frames: Iterable[torch.Tensor], *, i_rate: Rate,
                 p_rate: Optional[Rate] = None) -> Iterator[EvaluatedFrame]:
        """Test path (estimated bits) over frames [1, 3, H, W] in [0, 1]; P-frames at `p_rate`
        (default: `i_rate`).

        As in the published test script, the enhancement reconstruction is clamped to [0, 1] in
        the buffer, so the next frame refers to the clamped frame (while the base layer's
        reference after an I-frame is downsampled before the clamp).
        """
        p_rate = p_rate or i_rate

        def clamped(buffers: Buffers) -> Buffers:
            return replace(buffers, enhancement=replace(buffers.enhancement,
                                                        frame=buffers.enhancement.frame.clamp(0, 1)))

        def intra(x: torch.Tensor) -> Tuple[Buffers, torch.Tensor]:
            coded = self.i_frame(IntraNoAR.pad_frame(in_mode_dtype(x)), rate=i_rate)
            return clamped(self.p_frame.buffers_after_intra(coded.state)), coded.bits

        def inter(x: torch.Tensor, buffers: Buffers, frame_index: int) -> Tuple[Buffers, torch.Tensor]:
            coded = self.p_frame(in_mode_dtype(x), buffers, rate=p_rate, frame_index=frame_index)
            return clamped(coded.state), coded.bits

        for x, step, buffers, bits in self._run(frames, Mode.TEST, intra, inter):
            recon = crop(buffers.enhancement.frame, *x.shape[2:]).to(x.dtype)
            yield EvaluatedFrame(step.intra, bits, recon)

    @torch.no_grad()
    def encode(self, frames: Iterable[torch.Tensor], *, rate: Rate, fast: bool = False) -> Iterator[EncodedFrame]:
        """Encode frames [1, 3, H, W] in [0, 1] at `rate`; fast: the base layer only."""

        def intra(x: torch.Tensor) -> Tuple[Buffers, Tuple[bytes, ...]]:
            coded = self.i_frame.compress(IntraNoAR.pad_frame(in_mode_dtype(x)), rate=rate)
            return self.p_frame.buffers_after_intra(coded.state, base_layer_only=fast), coded.payloads

        def inter(x: torch.Tensor, buffers: Buffers, frame_index: int) -> Tuple[Buffers, Tuple[bytes, ...]]:
            x = in_mode_dtype(x)
            if fast:
                coded = self.p_frame.compress_base(x, buffers.base, rate=rate, frame_index=frame_index)
                return Buffers(coded.state, None), coded.payloads
            coded = self.p_frame.compress(x, buffers, rate=rate, frame_index=frame_index)
            return coded.state, coded.payloads

        for x, step, buffers, payloads in self._run(frames, Mode.CODEC, intra, inter):
            height, width = x.shape[2:]
            yield EncodedFrame(step.intra, payloads, self._full(buffers, height, width),
                               self._skim(buffers, height, width))

    @torch.no_grad()
    def decode(self, frames: Iterable[Sequence[bytes]], height: int, width: int, *, rate: Rate,
               fast: bool = False, skim: bool = False) -> Iterator[DecodedFrame]:
        """Decode the payloads of each frame (as `encode` made them) of a height x width sequence.

        fast: the stream is a fast-mode (base layer only) one; skim: decode only the base layer
        of a full stream (skim decoding). A frame that decodes to non-finite values (a
        corrupted stream) raises BitstreamError.
        """
        base_layer_only = fast or skim

        def intra(payloads: Sequence[bytes]) -> Tuple[Buffers, None]:
            x_hat = self.i_frame.decompress(payloads[0], height, width, rate=rate)
            return self.p_frame.buffers_after_intra(x_hat, base_layer_only=base_layer_only), None

        def inter(payloads: Sequence[bytes], buffers: Buffers, frame_index: int) -> Tuple[Buffers, None]:
            if base_layer_only:
                base = self.p_frame.decompress_base(payloads[0], buffers.base, height, width, rate=rate,
                                                    frame_index=frame_index, fast=fast)
                return Buffers(base, None), None
            return self.p_frame.decompress(payloads, buffers, height, width, rate=rate, frame_index=frame_index), None

        for _, step, buffers, _ in self._run(frames, Mode.CODEC, intra, inter):
            frame = DecodedFrame(step.intra, self._full(buffers, height, width), self._skim(buffers, height, width))
            if not all(bool(torch.isfinite(x).all()) for x in (frame.full, frame.skim) if x is not None):
                raise BitstreamError(f"frame {step.index} decodes to values that are not finite: "
                                     "the stream is corrupted")
            yield frame
