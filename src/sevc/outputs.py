"""Writing outputs atomically: a file or folder appears complete, or not at all."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import SevcError


class OutputError(SevcError):
    """An output path that cannot be written."""


def _parent(path: Path) -> Path:
    parent = path.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    return parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_file_path(path: str | os.PathLike) -> Path:
    """Check that a file can be written at `path` (its folder is created if needed); the folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output path is a folder: {path}")
    return _parent(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=check_file_path(path))
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        temporary.chmod(0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, stale: str = "") -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success each entry in it replaces the entry of
    that name in `path` (created if needed), after removing the files of `path` that match the
    glob pattern `stale`; on error the temporary folder is removed and `path` is left as it was."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path is not a folder: {path}")
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=_parent(path)))
    try:
        yield temporary
        path.mkdir(exist_ok=True)
        for old in path.glob(stale) if stale else ():
            if old.is_file():
                old.unlink()
        for entry in sorted(temporary.iterdir()):
            target = path / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
