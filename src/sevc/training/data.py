"""Training data: Vimeo-90k septuplets and generic folders of PNG sequences or raw YUV files.

Every dataset yields clips [T, 3, h, w], float32 RGB in [0, 1]: `length` consecutive frames,
one random crop of `crop` = (h, w) shared by the frames, randomly flipped left-right and
up-down (each with probability 1/2).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset, default_collate

from ..errors import FrameError, SevcError
from ..io.frames import count_yuv420_frames, png_frames, png_size, read_png, read_yuv420
from ..io.reading import read_bounded

LIST_LIMIT = 256 << 20  # bytes of a Vimeo-90k list file


def random_crop_flip(clip: torch.Tensor, crop: Tuple[int, int], rng: random.Random) -> torch.Tensor:
    """A random crop [T, 3, h, w] of clip [T, 3, H, W], randomly flipped in each direction."""
    height, width = clip.shape[-2:]
    h, w = crop
    if height < h or width < w:
        raise FrameError(f"frames of {width}x{height} are smaller than the {w}x{h} crop")
    top, left = rng.randint(0, height - h), rng.randint(0, width - w)
    clip = clip[..., top:top + h, left:left + w]
    if rng.random() < 0.5:
        clip = clip.flip(-1)
    if rng.random() < 0.5:
        clip = clip.flip(-2)
    return clip.contiguous()


class ClipDataset(Dataset):
    """Base of the datasets: subclasses list clips (`_clips`) and read `length` frames of one."""

    def __init__(self, length: int, crop: Tuple[int, int], seed: int = 0):
        self.length = length
        self.crop = tuple(crop)
        self.seed = seed
        self.epoch = 0
        self.clips: List = []

    def set_epoch(self, epoch: int) -> None:
        """Reseed the crops and flips (call once per epoch, as with a DistributedSampler)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def read(self, index: int, start: int) -> torch.Tensor:
        raise NotImplementedError

    def frames_in(self, index: int) -> int:
        raise NotImplementedError

    def frame_sizes(self) -> Iterator[Tuple[str, int, int]]:
        """(where, width, height) of the frames of each sequence, read from file headers."""
        raise NotImplementedError

    def check(self) -> None:
        """FrameError (or OSError) unless every sequence's frames are at least as large as the crop
        and the first clip can be read."""
        h, w = self.crop
        for where, width, height in self.frame_sizes():
            if width < w or height < h:
                raise FrameError(f"{where}: frames of {width}x{height} are smaller than the {w}x{h} crop")
        self.read(0, 0)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = random.Random(hash((self.seed, self.epoch, index)))
        start = rng.randint(0, self.frames_in(index) - self.length)
        return random_crop_flip(self.read(index, start), self.crop, rng)


class Vimeo90k(ClipDataset):
    """Vimeo-90k septuplets: `root/sequences/xxxxx/xxxx/im1.png .. im7.png`, listed in
    `root/<list_file>` (e.g. sep_trainlist.txt) as `xxxxx/xxxx` lines."""

    SEPTUPLET = 7

    def __init__(self, root: str | os.PathLike, length: int = 6, crop: Tuple[int, int] = (256, 256),
                 list_file: str = "sep_trainlist.txt", seed: int = 0):
        super().__init__(length, crop, seed)
        if not 1 <= length <= self.SEPTUPLET:
            raise FrameError(f"Vimeo-90k septuplets allow sequence_length 1..{self.SEPTUPLET}, got {length}")
        root = Path(root)
        if not root.is_dir():
            raise FrameError(f"training data folder not found: {root}")
        listing = root / list_file
        text = read_bounded(listing, "Vimeo-90k list", FrameError, LIST_LIMIT).decode("utf-8", "replace")
        self.clips = [root / "sequences" / line.strip() for line in text.splitlines() if line.strip()]
        if not self.clips:
            raise FrameError(f"{listing} lists no sequence")

    def frames_in(self, index: int) -> int:
        return self.SEPTUPLET

    def frame_sizes(self) -> Iterator[Tuple[str, int, int]]:
        """The first septuplet's (Vimeo-90k's are all 448x256)."""
        first = self.clips[0] / "im1.png"
        yield (str(self.clips[0]), *png_size(first))

    def read(self, index: int, start: int) -> torch.Tensor:
        folder = self.clips[index]
        return torch.cat([read_png(folder / f"im{k + 1}.png") for k in range(start, start + self.length)])


class SequenceFolder(ClipDataset):
    """Every PNG sequence folder (im00001.png, ...) under `root`, or every raw YUV 4:2:0 file
    of `width` x `height` under it (src_type 'yuv420'); clips are random windows of `length` frames."""

    def __init__(self, root: str | os.PathLike, length: int = 6, crop: Tuple[int, int] = (256, 256),
                 src_type: str = "png", width: Optional[int] = None, height: Optional[int] = None,
                 yuv_matrix: str = "bt601", yuv_range: str = "limited", seed: int = 0):
        super().__init__(length, crop, seed)
        root = Path(root)
        if not root.is_dir():
            raise FrameError(f"training data folder not found: {root}")
        self.src_type, self.size, self.color = src_type, (width, height), (yuv_matrix, yuv_range)
        self.frames: Dict[Path, List[Path]] = {}
        if src_type == "png":
            folders = sorted({p.parent for p in root.rglob("im00001.png")} | {p.parent for p in root.rglob("im1.png")})
            self.frames = {folder: png_frames(folder) for folder in folders}
            counts = [len(self.frames[folder]) for folder in folders]
        elif src_type == "yuv420":
            if width is None or height is None:
                raise FrameError("yuv420 training data needs width and height")
            folders = sorted(root.rglob("*.yuv"))
            counts = [count_yuv420_frames(f, width, height) for f in folders]
        else:
            raise FrameError(f"unknown source type {src_type!r}")
        self.clips = [(f, n) for f, n in zip(folders, counts) if n >= length]
        if not self.clips:
            raise FrameError(f"no {src_type} sequence of at least {length} frames under {root}")

    def frames_in(self, index: int) -> int:
        return self.clips[index][1]

    def frame_sizes(self) -> Iterator[Tuple[str, int, int]]:
        """Every sequence's: its first frame's header (PNG), or the given size (YUV)."""
        for path, _ in self.clips:
            yield (str(path), *(png_size(self.frames[path][0]) if self.src_type == "png" else self.size))

    def read(self, index: int, start: int) -> torch.Tensor:
        path, _ = self.clips[index]
        if self.src_type == "png":
            return torch.cat([read_png(frame) for frame in self.frames[path][start:start + self.length]])
        return torch.cat(list(read_yuv420(path, *self.size, self.length, *self.color, start=start)))


def build_dataset(spec: dict, length: int, crop: Sequence[int], seed: int = 0) -> ClipDataset:
    """A dataset from a stage configuration's `data` block: {"type": "vimeo90k", "root", ["list"]}
    or {"type": "folders", "root", ["src_type", "width", "height", "yuv_matrix", "yuv_range"]}."""
    kind = spec.get("type")
    if kind == "vimeo90k":
        return Vimeo90k(spec["root"], length, tuple(crop), spec.get("list", "sep_trainlist.txt"), seed)
    if kind == "folders":
        return SequenceFolder(spec["root"], length, tuple(crop), spec.get("src_type", "png"), spec.get("width"),
                              spec.get("height"), spec.get("yuv_matrix", "bt601"), spec.get("yuv_range", "limited"),
                              seed)
    raise FrameError(f"unknown training data type {kind!r} (vimeo90k or folders)")


@dataclass
class ReadFailure:
    """A clip a DataLoader worker could not read: its error, raised again in the main process as
    one clear line (instead of the worker's traceback)."""

    message: str


class Reported(Dataset):
    """`dataset`, with each clip that cannot be read returned as a ReadFailure (see `collate`)."""

    def __init__(self, dataset: ClipDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Union[torch.Tensor, ReadFailure]:
        try:
            return self.dataset[index]
        except (SevcError, OSError) as exc:
            return ReadFailure(f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) else str(exc))


def collate(items: List[Union[torch.Tensor, ReadFailure]]) -> Union[torch.Tensor, ReadFailure]:
    """A batch of clips [B, T, 3, h, w], or the first ReadFailure among them."""
    return next((item for item in items if isinstance(item, ReadFailure)), None) or default_collate(items)
