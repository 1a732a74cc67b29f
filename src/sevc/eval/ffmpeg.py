"""Running FFmpeg for the standard-codec anchors: finding it, its encoders, coding a raw YUV 4:2:0
file into an elementary stream and reading that stream back (packet sizes and decoded frames).

The FFmpeg used is, in this order: the one named (`--ffmpeg`), the binary of the `imageio-ffmpeg`
package (a dependency of sevc; it has libx264, libx265, libvvenc and libaom), an `ffmpeg` on PATH.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Set

from ..errors import AnchorError

FRAME_RATE = 30  # the nominal rate of raw input: the anchors code at fixed QPs, without rate control


@dataclass(frozen=True)
class Packet:
    """One coded frame of a stream: its size in bytes and whether it is a key (intra) frame."""

    size: int
    key: bool


def find_ffmpeg(path: Optional[str] = None) -> str:
    """The FFmpeg binary to run: `path` if given, else imageio-ffmpeg's, else `ffmpeg` on PATH."""
    if path is not None:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise AnchorError(f"--ffmpeg {path} is not an executable file")
        return path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
    if found is None:
        raise AnchorError("no FFmpeg found: pip install imageio-ffmpeg (it bundles one), put ffmpeg on PATH "
                          "or pass --ffmpeg PATH")
    return found


def run_ffmpeg(ffmpeg: str, args: Sequence[str], what: str) -> str:
    """Run FFmpeg with `args` (quiet, no questions); its stdout. AnchorError naming `what` and
    FFmpeg's last message if it fails."""
    command = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *map(str, args)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise AnchorError(f"cannot run {ffmpeg}: {exc.strerror}") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise AnchorError(f"{what} failed: {reason}")
    return result.stdout


def version(ffmpeg: str) -> str:
    """FFmpeg's version line ("ffmpeg version n7.1 ...")."""
    return run_ffmpeg(ffmpeg, ["-version"], "ffmpeg -version").splitlines()[0].strip()


def encoders(ffmpeg: str) -> Set[str]:
    """The names of the video encoders this FFmpeg was built with."""
    names = set()
    for line in run_ffmpeg(ffmpeg, ["-encoders"], "ffmpeg -encoders").splitlines():
        fields = line.split()
        if len(fields) >= 2 and len(fields[0]) == 6 and fields[0].startswith("V"):
            names.add(fields[1])
    return names


def encode(ffmpeg: str, source: Path, width: int, height: int, frames: int, options: Sequence[str],
           stream: Path, encoder: str) -> None:
    """Code `frames` frames of the raw 8-bit YUV 4:2:0 file `source` (width x height) with the
    FFmpeg output `options` (codec, settings, pixel format and muxer) into `stream`."""
    run_ffmpeg(ffmpeg, ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", FRAME_RATE,
                        "-i", source, "-frames:v", frames, *options, "-y", stream], encoder)


def decode(ffmpeg: str, stream: Path, pixel_format: str, output: Path) -> List[Packet]:
    """Decode `stream` (an elementary stream) to the raw file `output` in `pixel_format` (the
    stream's own, so that FFmpeg converts nothing); the stream's packets, in decoding order."""
    listing = run_ffmpeg(ffmpeg, ["-i", stream, "-map", "0", "-c", "copy", "-f", "framecrc", "pipe:1",
                                  "-map", "0", "-f", "rawvideo", "-pix_fmt", pixel_format, "-y", output],
                         f"decoding {stream.name}")
    return [_packet(line) for line in listing.splitlines() if line.strip() and not line.startswith("#")]


def _packet(line: str) -> Packet:
    """A packet of FFmpeg's framecrc listing: "stream, dts, pts, duration, size, crc[, F=flags]"
    (the flags are listed when they are not just "key")."""
    fields = [field.strip() for field in line.split(",")]
    flags = next((int(field[2:], 16) for field in fields[6:] if field.startswith("F=")), 1)
    return Packet(int(fields[4]), bool(flags & 1))
