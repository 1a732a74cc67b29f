"""What every SEVC sub-codec (I-frame, base layer, enhancement layer) shares: its rANS coder and
payloads, its per-rate feature scales, its checkpoint layout, and the shape of its results."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Iterator, Optional, Sequence, Tuple, TypeVar

import torch
from torch import nn

from ..entropy.coder import EntropyCoder
from ..latent_codecs.base import CodedLatent, checkpoint_layout, latent_codecs
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
    """Base of the I-frame, base-layer and enhancement-layer codecs: transforms plus latent codecs
    (`sevc.latent_codecs`), whose coded latents make one rANS payload per frame.

    CHECKPOINT_ORDER: the codec's top-level checkpoint entries in the published order (see
    `checkpoint_layout`). ec_thread, stream_part: rANS coder options (background encoding,
    parallel stream parts).
    """

    CHECKPOINT_ORDER: Tuple[str, ...] = ()

    def __init__(self, ec_thread: bool = False, stream_part: int = 1):
        super().__init__()
        self.ec_thread = ec_thread
        self.stream_part = stream_part
        self.entropy_coder: Optional[EntropyCoder] = None
        checkpoint_layout(self, self.CHECKPOINT_ORDER)

    def update(self, force: bool = False) -> None:
        """Create the rANS coder and build the latent codecs' tables (needed before compress)."""
        self.entropy_coder = EntropyCoder(self.ec_thread, self.stream_part)
        for codec in latent_codecs(self):
            codec.update(force)

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

    def _coder(self) -> EntropyCoder:
        if self.entropy_coder is None:
            raise RuntimeError(f"{type(self).__name__}.update() must be called before compress/decompress")
        return self.entropy_coder

    def payload(self, latents: Sequence[CodedLatent]) -> bytes:
        """One payload holding the symbols of `latents`, in that order."""
        coder = self._coder()
        coder.reset()
        for latent in latents:
            latent.write(coder)
        return coder.flush()

    @contextmanager
    def reading(self, payload: bytes) -> Iterator[EntropyCoder]:
        """The coder, reading `payload`; checks at the end that it was read exactly to its end."""
        coder = self._coder()
        coder.set_stream(payload)
        yield coder
        coder.finish()
