"""The sizes sevc codes: checked on every input and on every stream header before anything is allocated."""
from __future__ import annotations

from .errors import LimitError

MIN_SIDE = 64                # the smallest frame side SEVC codes (its base layer then is 16 pixels)
MAX_SIDE = 8192              # the largest frame side (8K: 7680x4320 UHD and 8192x4320 DCI)
MAX_PIXELS = 8192 * 4320     # the largest frame area
MAX_FRAMES = 1_000_000       # the most frames one stream holds (over 9 hours at 30 frames/s)
PAYLOAD_BYTES_PER_PIXEL = 16  # see max_payload_bytes
PAYLOAD_SLACK = 1 << 16


def check_frame_size(width: int, height: int) -> None:
    """Raise LimitError unless width x height is a frame size sevc codes."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise LimitError(f"frames must be at least {MIN_SIDE}x{MIN_SIDE}, got {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise LimitError(f"frames of {width}x{height} exceed the largest size sevc codes "
                         f"({MAX_SIDE} pixels a side, {MAX_PIXELS} pixels in all)")


def check_frame_count(count: int) -> None:
    """Raise LimitError unless a stream may hold `count` frames."""
    if not 1 <= count <= MAX_FRAMES:
        raise LimitError(f"a stream holds 1..{MAX_FRAMES} frames, not {count}")


def max_payload_bytes(width: int, height: int) -> int:
    """The most bytes one payload (a layer of a frame) of width x height frames may have: 16 per
    pixel of the frame padded to multiples of 64, plus 64 KiB. The rANS coder writes at most about
    5 bytes per pixel for any input (a symbol per pixel at most, each at most 16 bits of
    probability, an escape count and four 4-bit chunks), so a longer payload is a damaged stream,
    refused before it is read."""
    padded = -(-width // 64) * 64 * -(-height // 64) * 64
    return PAYLOAD_BYTES_PER_PIXEL * padded + PAYLOAD_SLACK
