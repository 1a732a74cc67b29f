"""Writing outputs safely: a file or folder appears complete or not at all, and nothing sevc did
not write is ever replaced or deleted without being asked to.

An output **file** may be new, or a regular file of the kind sevc writes there (a sevc stream, a
result file). An output **folder** may be new, empty, or hold only entries of its `Layout` (the
names sevc writes there). Anything else is refused with a clear error unless `overwrite` is
given; even then only sevc's own entries are replaced or removed, and devices, FIFOs, sockets and
the inputs of the run are never written.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Mapping, Tuple

from ..errors import OutputError


@dataclass(frozen=True)
class Layout:
    """What sevc writes into an output folder: files (names as regular expressions) and sub-folders."""

    files: Tuple[str, ...] = ()
    folders: Mapping[str, "Layout"] = field(default_factory=dict)

    def owns_file(self, name: str) -> bool:
        return any(re.fullmatch(pattern, name) for pattern in self.files)


def _kind(mode: int) -> str:
    """A file type in words ('a FIFO', ...)."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a file"


def _parent(path: Path) -> Path:
    parent = path.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    return parent


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def any_file(path: Path) -> bool:
    """The ownership test of paths only sevc writes to (e.g. inside a training run folder)."""
    return True


def check_file_path(path: str | os.PathLike, owned: Callable[[Path], bool] = any_file,
                    overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Check that `path` may be written as a file; returns its folder (created if needed).

    owned(path) tells whether an existing regular file is one sevc writes there (then it is
    replaced without asking). Symbolic links and other files are replaced only with `overwrite`;
    folders, devices, FIFOs, sockets and `inputs` never.
    """
    path = Path(path)
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _parent(path)
    except OSError as exc:
        raise OutputError(f"cannot use output {path}: {exc.strerror}") from None
    if any(_same_file(path, Path(source)) for source in inputs):
        raise OutputError(f"output {path} is one of the inputs; choose another output path")
    if stat.S_ISLNK(mode) and not overwrite:
        raise OutputError(f"output {path} is a symbolic link; pass --overwrite to replace the link "
                          "(its target is left alone) or choose another path")
    if not stat.S_ISLNK(mode) and not stat.S_ISREG(mode):
        raise OutputError(f"output {path} is {_kind(mode)}, not a file sevc may replace; choose another path")
    if stat.S_ISREG(mode) and not overwrite and not owned(path):
        raise OutputError(f"output {path} exists and is not a file sevc wrote; pass --overwrite to replace it "
                          "or choose another path")
    return _parent(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, owned: Callable[[Path], bool] = any_file, overwrite: bool = False,
                inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary path beside `path` (checked with `check_file_path`); on success it is
    renamed to `path`, on error or interruption removed."""
    path = Path(path)
    folder = check_file_path(path, owned, overwrite, inputs)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        temporary.chmod(0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _survey(folder: Path, layout: Layout, prefix: str = "") -> Tuple[List[str], List[str]]:
    """(foreign entries, entries in the way) of an existing folder, as paths relative to it.

    Foreign: entries sevc does not write there. In the way: foreign entries with a name sevc
    writes (a FIFO or link named like its files, a file named like its folders).
    """
    foreign, blocking = [], []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            name = prefix + entry.name
            if entry.name in layout.folders:
                if entry.is_dir(follow_symlinks=False):
                    more, blocked = _survey(Path(entry.path), layout.folders[entry.name], name + "/")
                    foreign += more
                    blocking += blocked
                else:
                    foreign.append(name)
                    blocking.append(name)
            elif layout.owns_file(entry.name) and not entry.is_file(follow_symlinks=False):
                foreign.append(name)
                blocking.append(name)
            elif not layout.owns_file(entry.name):
                foreign.append(name)
    return foreign, blocking


def check_folder_path(path: str | os.PathLike, layout: Layout, overwrite: bool = False) -> Path:
    """Check that sevc may write `layout` into the folder `path`; returns its parent folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path is not a folder: {path}")
    parent = _parent(path)
    if not path.exists():
        return parent
    foreign, blocking = _survey(path, layout)
    if blocking:
        raise OutputError(f"{path / blocking[0]} is in the way of an output of the same name; move it or choose "
                          "another output folder")
    if foreign and not overwrite:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputError(f"{path} holds {foreign[0]}{more}, which sevc did not write; choose another output folder "
                          "or pass --overwrite (sevc then replaces only its own files)")
    return parent


def _remove_own(path: Path, layout: Layout) -> None:
    """Remove sevc's entries from the folder `path`, and the folder if nothing else is left."""
    with os.scandir(path) as entries:
        for entry in list(entries):
            if entry.name in layout.folders and entry.is_dir(follow_symlinks=False):
                _remove_own(Path(entry.path), layout.folders[entry.name])
            elif layout.owns_file(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
    with contextlib.suppress(OSError):
        path.rmdir()


def _merge(source: Path, target: Path, layout: Layout) -> None:
    """Move the entries of `source` into `target`; sevc's entries of `target` that `source` does
    not have are removed (they belong to an earlier output), other entries stay."""
    target.mkdir(exist_ok=True)
    new = {entry.name for entry in source.iterdir()}
    with os.scandir(target) as entries:
        stale = [entry for entry in entries if entry.name not in new]
    for entry in stale:
        if entry.name in layout.folders and entry.is_dir(follow_symlinks=False):
            _remove_own(Path(entry.path), layout.folders[entry.name])
        elif layout.owns_file(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and destination.is_dir() and not destination.is_symlink():
            _merge(entry, destination, layout.folders[entry.name])
        else:
            os.replace(entry, destination)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, layout: Layout, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path` (checked with `check_folder_path`); on success its
    entries replace sevc's entries of `path` (created if needed), on error or interruption the
    temporary folder is removed and `path` is left as it was."""
    path = Path(path)
    parent = check_folder_path(path, layout, overwrite)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=parent))
    try:
        yield temporary
        _merge(temporary, path, layout)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def starts_with(magic: bytes) -> Callable[[Path], bool]:
    """An ownership test: the file begins with `magic`."""
    def owned(path: Path) -> bool:
        try:
            with open(path, "rb") as file:
                return file.read(len(magic)) == magic
        except OSError:
            return False
    return owned


def is_json_object(path: Path, limit: int = 1 << 26) -> bool:
    """An ownership test for result files: a JSON object (files over `limit` bytes are not)."""
    try:
        if path.stat().st_size > limit:
            return False
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False
