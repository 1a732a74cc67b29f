"""Reading and writing video frames: PNG folders and raw 8-bit YUV 4:2:0 files.

Frames are tensors [1, 3, H, W], float32 RGB in [0, 1] (PNG pixels / 255). PNG folders hold
`im00001.png, im00002.png, ...` (or `im1.png, im2.png, ...`), as the published scripts read them,
numbered from 1 without gaps; every frame must be a regular file holding a PNG whose header
declares at most the largest frame sevc codes (checked before it is decoded). A raw `.yuv` file
holds planar Y, U, V frames back to back (U and V at half width and height); it is converted
with the BT.601 or BT.709 matrix, limited ("tv", Y in 16..235) or full range.
"""
from __future__ import annotations

import os
import re
import struct
import sys
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import FrameError
from ..limits import MAX_PIXELS, MAX_SIDE
from .reading import check_regular, open_regular

SOURCE_TYPES = ("png", "yuv420")
COLOR_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}  # (Kr, Kb)
COLOR_RANGES = ("limited", "full")
PNG_NAMES = (("im{:05d}.png", re.compile(r"im([0-9]{5,})\.png")), ("im{}.png", re.compile(r"im([1-9][0-9]*)\.png")))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_name(folder: Path) -> Tuple[str, re.Pattern]:
    """The naming pattern of a PNG folder ('im{:05d}.png' or 'im{}.png') and its expression."""
    for pattern, expression in PNG_NAMES:
        if os.path.lexists(folder / pattern.format(1)):
            return pattern, expression
    raise FrameError(f"{folder}: no first frame (expected im00001.png or im1.png)")


def png_frames(folder: str | os.PathLike) -> List[Path]:
    """The frames of a PNG folder in order: im00001.png, im00002.png, ... (or im1.png, ...). A gap
    in the numbering, or a frame that is not a regular file (a folder, a FIFO), is a FrameError:
    the sequence is never silently shortened."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameError(f"input folder not found: {folder}")
    pattern, expression = _png_name(folder)
    numbers = sorted(int(match.group(1)) for match in map(expression.fullmatch, os.listdir(folder))
                     if match and pattern.format(int(match.group(1))) == match.group(0))
    missing = next((k + 1 for k, number in enumerate(numbers) if number != k + 1), None)
    if missing is not None:
        raise FrameError(f"{folder} lacks {pattern.format(missing)} but holds {pattern.format(numbers[-1])}: frames "
                         "must be numbered from 1 without gaps")
    paths = [folder / pattern.format(number) for number in numbers]
    for path in paths:
        check_regular(path, "PNG frame", FrameError)
    return paths


def count_png_frames(folder: str | os.PathLike) -> int:
    """Number of frames im00001.png, im00002.png, ... in `folder` (see `png_frames`)."""
    return len(png_frames(folder))


def _image_kind(path: str | os.PathLike) -> str:
    """'a JPEG image', ... or 'not an image', for a file that is not a PNG."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return f"a {image.format} image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "not an image"


def png_size(path: str | os.PathLike) -> Tuple[int, int]:
    """(width, height) a PNG file's header declares, read without decoding anything; FrameError if
    it is not a regular file holding a PNG."""
    with open_regular(path, "PNG frame", FrameError, sys.maxsize) as file:
        head = file.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise FrameError(f"{path} is {_image_kind(path)}, not a PNG")
    return struct.unpack(">II", head[16:24])


def read_png(path: str | os.PathLike, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """One PNG as [1, 3, H, W] float32 RGB in [0, 1]; size=(width, height): it must be that size.

    The header is checked before anything is decoded: other images (JPEG, ...) named .png,
    images larger than the largest frame sevc codes and, with `size`, images of another size are
    refused. 8-bit RGB, grayscale (replicated to RGB), palette and 1-bit images are converted
    exactly, 16-bit grayscale as value / 65535; images with transparent pixels and 16-bit color
    images (which Pillow reads only to 8 bits) are refused.
    """
    width, height = png_size(path)
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise FrameError(f"{path} declares {width}x{height} pixels, more than the largest frame sevc reads "
                         f"({MAX_SIDE} pixels a side, {MAX_PIXELS} in all)")
    if size is not None and (width, height) != tuple(size):
        raise FrameError(f"{path} is {width}x{height}, expected {size[0]}x{size[1]}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG"]) as image:
                rgb = _rgb_array(image, path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise FrameError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]


def _rgb_array(image: Image.Image, path) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] of an opened image (see read_png)."""
    if image.mode in ("RGB", "RGBA") and any(";16" in str(tile[3]) for tile in image.tile):
        raise FrameError(f"{path} is a 16-bit color image, which sevc cannot read exactly; convert it to 8 bits")
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise FrameError(f"{path} has samples outside the 16-bit range")
        return np.repeat((values / 65535.0)[..., None], 3, axis=2).astype(np.float32)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"))
        if (rgba[..., 3] != 255).any():
            raise FrameError(f"{path} has transparent pixels; sevc codes opaque RGB frames")
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def write_png(frame: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a [1, 3, H, W] frame in [0, 1] as an 8-bit RGB PNG (values rounded)."""
    rgb = frame[0].detach().cpu().clamp(0, 1).numpy().transpose(1, 2, 0)
    Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(path)


def read_png_folder(folder: str | os.PathLike, width: int, height: int,
                    frames: Optional[int] = None) -> Iterator[torch.Tensor]:
    """Frames of a PNG folder, checked to be width x height; frames=None: all of them.

    Raises FrameError at once (not when iterating) if fewer than `frames` frames exist or the
    first one has another size.
    """
    paths = png_frames(folder)
    if frames is not None and len(paths) < frames:
        raise FrameError(f"{folder} holds {len(paths)} frames, {frames} were asked for")
    paths = paths[:frames]
    if paths:
        read_png(paths[0], (width, height))
    return (read_png(path, (width, height)) for path in paths)


def yuv420_frame_bytes(width: int, height: int) -> int:
    if width % 2 or height % 2:
        raise FrameError(f"YUV 4:2:0 needs an even width and height, got {width}x{height}")
    return width * height * 3 // 2


def count_yuv420_frames(path: str | os.PathLike, width: int, height: int) -> int:
    """Number of whole width x height frames in a raw YUV 4:2:0 file."""
    size = check_regular(path, "YUV input", FrameError).st_size
    frame_bytes = yuv420_frame_bytes(width, height)
    if size % frame_bytes:
        raise FrameError(f"{path}: {size} bytes is not a whole number of {width}x{height} YUV 4:2:0 frames")
    return size // frame_bytes


def _color_constants(matrix: str, color_range: str):
    if matrix not in COLOR_MATRICES:
        raise FrameError(f"unknown color matrix {matrix!r} (choose from {', '.join(COLOR_MATRICES)})")
    if color_range not in COLOR_RANGES:
        raise FrameError(f"unknown color range {color_range!r} (choose from {', '.join(COLOR_RANGES)})")
    kr, kb = COLOR_MATRICES[matrix]
    # (offset, scale) of luma and chroma in 8-bit code values
    luma, chroma = ((16.0, 219.0), (128.0, 224.0)) if color_range == "limited" else ((0.0, 255.0), (128.0, 255.0))
    return kr, kb, luma, chroma


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = "bt601",
                  color_range: str = "limited") -> torch.Tensor:
    """8-bit planes (Y [H, W], U and V [H/2, W/2]) to RGB [1, 3, H, W] in [0, 1].

    Chroma is upsampled by repeating each sample over its 2x2 block.
    """
    kr, kb, (y_off, y_scale), (c_off, c_scale) = _color_constants(matrix, color_range)
    luma = (y.astype(np.float64) - y_off) / y_scale
    cb = (np.repeat(np.repeat(u, 2, 0), 2, 1).astype(np.float64) - c_off) / c_scale
    cr = (np.repeat(np.repeat(v, 2, 0), 2, 1).astype(np.float64) - c_off) / c_scale
    r = luma + 2 * (1 - kr) * cr
    b = luma + 2 * (1 - kb) * cb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    rgb = np.clip(np.stack([r, g, b]), 0, 1).astype(np.float32)
    return torch.from_numpy(rgb)[None]


def rgb_to_yuv420(frame: torch.Tensor, matrix: str = "bt601", color_range: str = "limited") -> bytes:
    """A [1, 3, H, W] frame in [0, 1] as 8-bit planar YUV 4:2:0 bytes (chroma: mean of each 2x2 block)."""
    kr, kb, (y_off, y_scale), (c_off, c_scale) = _color_constants(matrix, color_range)
    r, g, b = frame[0].detach().cpu().double().clamp(0, 1).numpy()
    height, width = r.shape
    yuv420_frame_bytes(width, height)
    luma = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - luma) / (2 * (1 - kb))
    cr = (r - luma) / (2 * (1 - kr))

    def half(plane):
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = (luma * y_scale + y_off, half(cb) * c_scale + c_off, half(cr) * c_scale + c_off)
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def read_yuv420(path: str | os.PathLike, width: int, height: int, frames: Optional[int] = None,
                matrix: str = "bt601", color_range: str = "limited", start: int = 0) -> Iterator[torch.Tensor]:
    """Frames start, start + 1, ... of a raw 8-bit YUV 4:2:0 file as RGB; frames=None: all the rest."""
    available = count_yuv420_frames(path, width, height) - start
    if frames is not None and available < frames:
        raise FrameError(f"{path} holds {available} frames of {width}x{height} from frame {start}, "
                         f"{frames} were asked for")
    _color_constants(matrix, color_range)
    return _yuv420_frames(path, width, height, start, available if frames is None else frames, matrix, color_range)


def _yuv420_frames(path, width: int, height: int, start: int, frames: int, matrix: str,
                   color_range: str) -> Iterator[torch.Tensor]:
    luma_bytes, chroma_bytes = width * height, width * height // 4
    with open_regular(path, "YUV input", FrameError, sys.maxsize) as f:
        f.seek(start * yuv420_frame_bytes(width, height))
        for _ in range(frames):
            data = np.frombuffer(f.read(yuv420_frame_bytes(width, height)), dtype=np.uint8)
            y = data[:luma_bytes].reshape(height, width)
            u = data[luma_bytes:luma_bytes + chroma_bytes].reshape(height // 2, width // 2)
            v = data[luma_bytes + chroma_bytes:].reshape(height // 2, width // 2)
            yield yuv420_to_rgb(y, u, v, matrix, color_range)


def read_frames(source: str | os.PathLike, src_type: str, width: int, height: int, frames: Optional[int] = None,
                matrix: str = "bt601", color_range: str = "limited") -> Iterator[torch.Tensor]:
    """Frames of a PNG folder (src_type 'png') or a raw YUV file ('yuv420'), see the readers."""
    if src_type == "png":
        return read_png_folder(source, width, height, frames)
    if src_type == "yuv420":
        return read_yuv420(source, width, height, frames, matrix, color_range)
    raise FrameError(f"unknown source type {src_type!r} (choose from {', '.join(SOURCE_TYPES)})")


def available_frames(source: str | os.PathLike, src_type: str, width: int, height: int) -> int:
    """How many frames `source` holds."""
    if src_type == "png":
        return count_png_frames(source)
    if src_type == "yuv420":
        return count_yuv420_frames(source, width, height)
    raise FrameError(f"unknown source type {src_type!r} (choose from {', '.join(SOURCE_TYPES)})")
