"""The frame schedule of a sequence: which frames are I-frames, where the propagated features are
refreshed, and the frame index each P-frame is coded with.

The published scripts differ in one point, kept here: the test path (test.py) codes P-frame k
with frame index (k % refresh_interval) % 4, the encoder and decoder with k itself. The models
only use the index modulo 4 (the hierarchical feature adaptors), so the two agree whenever the
refresh interval is a multiple of 4, as the default 32 is.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterator


class Mode(Enum):
    """How a sequence is coded: the test path (estimated bits) or the codec (encoder, decoder)."""

    TEST = "test"
    CODEC = "codec"


@dataclass(frozen=True)
class FrameStep:
    """Frame `index` of a sequence: an I-frame, or a P-frame coded with `frame_index`, after the
    propagated features are refreshed if `refresh`."""

    index: int
    intra: bool
    refresh: bool
    frame_index: int


DEFAULT_REFRESH_INTERVAL = 32  # the published scripts'


@dataclass(frozen=True)
class FrameSchedule:
    """intra_period <= 0: only the first frame is an I-frame. The propagated features are reset on
    the frame after every multiple of `refresh_interval`."""

    intra_period: int = -1
    refresh_interval: int = DEFAULT_REFRESH_INTERVAL

    def __post_init__(self) -> None:
        if self.refresh_interval < 1:
            raise ValueError(f"the refresh interval must be positive, got {self.refresh_interval}")

    def is_intra(self, index: int) -> bool:
        return index == 0 or (self.intra_period > 0 and index % self.intra_period == 0)

    def step(self, index: int, mode: Mode) -> FrameStep:
        """How frame `index` is coded in `mode`."""
        frame_index = (index % self.refresh_interval) % 4 if mode is Mode.TEST else index
        return FrameStep(index, self.is_intra(index), index % self.refresh_interval == 1, frame_index)

    def steps(self, mode: Mode) -> Iterator[FrameStep]:
        """Frame 0, 1, ... without end (zip it with the frames)."""
        index = 0
        while True:
            yield self.step(index, mode)
            index += 1
