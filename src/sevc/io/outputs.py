"""Writing outputs safely: an output appears complete or not at all, and nothing sevc did not
write is ever replaced or deleted.

**Folders** (a decoded video, an official stream, a report, a training run) are owned by
record: sevc lists what it writes into a folder in a manifest there (`.sevc-manifest.json`:
each file's path, size and SHA-256). Only listed files that are unchanged since are sevc's: they
are replaced or removed freely. A folder holding anything else (a file sevc did not list, one
changed since, a link, a FIFO) is refused unless `overwrite` is given, and even then such
entries are never replaced or removed: one in the way of an output (at a path the output uses)
stops the run. A name proves nothing: a user's `im00001.png` is the user's.

**Files** (a sevc stream, a result file) may be new, or replaced when they are one sevc writes
there by their whole header or schema (`owned`), or with `overwrite`.

Files that are inputs of the same run (the same device and inode, links followed) are never
written, with or without `overwrite`. Parent folders an output creates are removed again if it
fails. Everything is written under a temporary name and moved into place when complete, in a
section no stopping signal interrupts (`sevc.signals.critical`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from ..errors import OutputError
from ..signals import critical
from .reading import kind_of, load_json

MANIFEST = ".sevc-manifest.json"
MANIFEST_LIMIT = 256 << 20
Record = Dict[str, object]  # {"size": bytes, "sha256": hex digest} of a file sevc wrote
FileId = Tuple[int, int]    # (device, inode)


@dataclass(frozen=True)
class OutputKind:
    """A kind of output folder: its name in messages, and the paths (relative, '/'-separated;
    a regular expression) that belong to such an output, so that a file sevc did not write there
    is in the way of it."""

    name: str
    reserved: str


def input_ids(inputs: Iterable[str | os.PathLike]) -> Set[FileId]:
    """(device, inode) of every input: a file, or a folder and the files directly in it (links
    followed; paths that do not exist are left out)."""
    ids: Set[FileId] = set()
    for source in inputs:
        with contextlib.suppress(OSError):
            status = os.stat(source)
            ids.add((status.st_dev, status.st_ino))
            if stat.S_ISDIR(status.st_mode):
                with os.scandir(source) as entries:
                    for entry in entries:
                        with contextlib.suppress(OSError):
                            inner = entry.stat()
                            ids.add((inner.st_dev, inner.st_ino))
    return ids


def _is_input(path: Path, ids: Set[FileId]) -> bool:
    """Whether `path`, or what it links to, is one of the inputs."""
    for status in (os.lstat, os.stat):
        with contextlib.suppress(OSError):
            found = status(path)
            if (found.st_dev, found.st_ino) in ids:
                return True
    return False


def record(path: Path) -> Record:
    """The manifest record of the file `path`: its size and SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}


@dataclass
class Manifest:
    """What sevc wrote into a folder: the folder's kind and {relative path: [records]} (more than
    one record while files are being replaced: the old and the new content are both sevc's)."""

    kind: str
    files: Dict[str, List[Record]] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> Optional["Manifest"]:
        """The folder's manifest; None if it has none; OutputError if the file there is not one."""
        path = folder / MANIFEST
        if not os.path.lexists(path):
            return None
        refusal = f"{path} is not a manifest sevc wrote; move it away or choose another output folder"
        try:
            value = load_json(path, "sevc manifest", OutputError, MANIFEST_LIMIT)
        except OutputError:
            raise OutputError(refusal) from None
        if not (isinstance(value, dict) and isinstance(value.get("kind"), str) and isinstance(value.get("files"), dict)
                and all(isinstance(records, list) and all(map(_is_record, records))
                        for records in value["files"].values())):
            raise OutputError(refusal)
        return cls(value["kind"], value["files"])

    def write(self, folder: Path) -> None:
        """Write the manifest into `folder` atomically."""
        handle, temporary = tempfile.mkstemp(prefix=f"{MANIFEST}.", suffix=".partial", dir=folder)
        try:
            with os.fdopen(handle, "w") as file:
                json.dump({"kind": self.kind, "files": self.files}, file, indent=1, sort_keys=True)
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, folder / MANIFEST)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def lists(self, relative: str, path: Path) -> bool:
        """Whether the file `path` (at `relative`) is listed with its current content."""
        records = self.files.get(relative, [])
        size = os.path.getsize(path)
        return any(r["size"] == size for r in records) and record(path) in records


def _is_record(value: object) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("size"), int) and isinstance(value.get("sha256"), str)
            and len(value) == 2)


@dataclass
class Survey:
    """An existing output folder's entries (relative paths): sevc's files as it wrote them, sevc's
    files changed since, and entries sevc did not write (files, links, FIFOs, ...)."""

    owned: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    foreign: List[str] = field(default_factory=list)


def _walk(folder: Path, prefix: str = "") -> Iterator[Tuple[str, os.DirEntry]]:
    """(relative path, entry) of everything below `folder` but folders (links not followed)."""
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), relative + "/")
            elif relative != MANIFEST:
                yield relative, entry


def survey(folder: Path, manifest: Optional[Manifest]) -> Survey:
    """Sort the entries of the existing folder `folder` by who wrote them (see Survey)."""
    found = Survey()
    for relative, entry in _walk(folder):
        if not entry.is_file(follow_symlinks=False) or manifest is None or relative not in manifest.files:
            found.foreign.append(relative)
        elif manifest.lists(relative, Path(entry.path)):
            found.owned.append(relative)
        else:
            found.changed.append(relative)
    return found


def _listing(folder: Path, paths: List[str], shown: int = 3) -> str:
    """Up to `shown` of `paths` (in `folder`), and how many more."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(str(folder / path) for path in paths[:shown]) + more


def _in_way(relative: str, kind: OutputKind, new: Set[str]) -> bool:
    """Whether an entry at `relative` is where an output of `kind` (writing `new`) goes."""
    ancestors = {"/".join(path.split("/")[:k]) for path in new for k in range(1, path.count("/") + 1)}
    return relative in new or relative in ancestors or re.fullmatch(kind.reserved, relative) is not None


def _replaceable(folder: Path, kind: OutputKind, overwrite: bool, ids: Set[FileId], new: Set[str]) -> List[str]:
    """The entries of the existing folder an output of `kind` may replace or remove; OutputError
    if it may not be written there (see the module's docstring)."""
    manifest = Manifest.read(folder)
    if manifest is not None and manifest.kind != kind.name:
        raise OutputError(f"{folder} holds {manifest.kind} written by sevc, not {kind.name}; choose another "
                          "output folder")
    found = survey(folder, manifest)
    if found.foreign and not overwrite:
        raise OutputError(f"{folder} holds {_listing(Path(), found.foreign)}, which sevc did not write; choose "
                          "another output folder or pass --overwrite (sevc then leaves such files as they are)")
    if found.changed and not overwrite:
        raise OutputError(f"{_listing(folder, found.changed)} changed since sevc wrote "
                          f"{'them' if len(found.changed) > 1 else 'it'}; choose another output folder or pass "
                          "--overwrite to replace such files")
    blocking = [relative for relative in found.foreign if _in_way(relative, kind, new)]
    if blocking:
        raise OutputError(f"{folder / blocking[0]} is in the way of the output, and sevc never replaces a file it "
                          "did not write; move it or choose another output folder")
    replaceable = found.owned + found.changed
    inputs = [relative for relative in replaceable if _is_input(folder / relative, ids)]
    if inputs:
        raise OutputError(f"{folder / inputs[0]} is an input of this run; choose another output folder")
    return replaceable


def _check_creatable(folder: Path) -> None:
    """OutputError unless `folder` is, or can be created as, a writable folder."""
    folder = folder.absolute()
    ancestor = folder
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot create {folder}: {ancestor} is {kind_of(ancestor.lstat().st_mode)}, not a folder")
    if not os.access(ancestor, os.W_OK):
        raise OutputError(f"output folder is not writable: {ancestor}")


def _make_folders(folder: Path) -> List[Path]:
    """Create `folder` and its missing parents; the folders created, outermost first."""
    missing = []
    folder = folder.absolute()
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as exc:
            _remove_folders(missing[::-1][:missing[::-1].index(path)])
            raise OutputError(f"cannot create {path}: {exc.strerror}") from None
    return missing[::-1]


def _remove_folders(created: List[Path]) -> None:
    """Remove the folders `_make_folders` created, innermost first, where they are empty."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


def check_folder(path: str | os.PathLike, kind: OutputKind, overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Raise OutputError unless an output of `kind` may be written into the folder `path`."""
    _check_folder(Path(path), kind, overwrite, input_ids(inputs))


def _check_folder(path: Path, kind: OutputKind, overwrite: bool, ids: Set[FileId]) -> None:
    _check_creatable(path if os.path.lexists(path) else path.parent)
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise OutputError(f"output path is not a folder: {path}")
    _replaceable(path, kind, overwrite, ids, set())


def _files(folder: Path) -> Dict[str, Record]:
    return {relative: record(Path(entry.path)) for relative, entry in _walk(folder)}


def _remove(folder: Path, relative: str) -> None:
    """Remove the file `relative` of `folder`, then its folders up to `folder` that are left empty."""
    os.unlink(folder / relative)
    parent = (folder / relative).parent
    while parent != folder:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def _commit(source: Path, target: Path, kind: OutputKind, overwrite: bool, ids: Set[FileId]) -> None:
    """Put the files of the folder `source` into the folder `target` (a new folder: `source`
    renamed) and record them in its manifest; sevc's files of `target` that `source` does not
    have belong to an earlier output and are removed."""
    new = _files(source)
    with critical():
        if not os.path.lexists(target):
            Manifest(kind.name, {relative: [r] for relative, r in new.items()}).write(source)
            source.chmod(0o777 & ~_umask())
            os.rename(source, target)
            return
        replaceable = _replaceable(target, kind, overwrite, ids, set(new))
        old = Manifest.read(target) or Manifest(kind.name)
        both = {relative: old.files.get(relative, []) for relative in replaceable}
        for relative, r in new.items():
            both[relative] = both.get(relative, []) + [r]
        Manifest(kind.name, both).write(target)
        for relative in new:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source / relative, target / relative)
        for relative in set(replaceable) - set(new):
            _remove(target, relative)
        Manifest(kind.name, {relative: [r] for relative, r in new.items()}).write(target)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, kind: OutputKind, overwrite: bool = False,
               inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside `path` (checked with `check_folder`); on success its files
    become the output of `kind` in `path` (see `_commit`); on error or interruption the temporary
    folder, and the parent folders created for it, are removed and `path` is left as it was."""
    path = Path(path)
    ids = input_ids(inputs)
    _check_folder(path, kind, overwrite, ids)
    created = _make_folders(path.absolute().parent)
    try:
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.absolute().name}.", suffix=".partial",
                                          dir=path.absolute().parent))
        try:
            yield temporary
            _commit(temporary, path, kind, overwrite, ids)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    except BaseException:
        _remove_folders(created)
        raise


def any_file(path: Path) -> bool:
    """An ownership test that accepts every regular file."""
    return True


def check_file(path: str | os.PathLike, owned: Callable[[Path], bool] = any_file, overwrite: bool = False,
               inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Raise OutputError unless `path` may be written as a file.

    owned(path) tells whether an existing regular file is one sevc writes there (then it is
    replaced without asking). Symbolic links and other files are replaced only with `overwrite`
    (a link, never its target); folders, devices, FIFOs, sockets and the inputs never.
    """
    _check_file(Path(path), owned, overwrite, input_ids(inputs))


def _check_file(path: Path, owned: Callable[[Path], bool], overwrite: bool, ids: Set[FileId]) -> None:
    _check_creatable(path.parent)
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise OutputError(f"cannot use output {path}: {exc.strerror}") from None
    if _is_input(path, ids):
        raise OutputError(f"output {path} is one of the inputs; choose another output path")
    if stat.S_ISLNK(mode) and not overwrite:
        raise OutputError(f"output {path} is a symbolic link; pass --overwrite to replace the link "
                          "(its target is left alone) or choose another path")
    if not stat.S_ISLNK(mode) and not stat.S_ISREG(mode):
        raise OutputError(f"output {path} is {kind_of(mode)}, not a file sevc may replace; choose another path")
    if stat.S_ISREG(mode) and not overwrite and not owned(path):
        raise OutputError(f"output {path} exists and is not a file sevc wrote; pass --overwrite to replace it "
                          "or choose another path")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, owned: Callable[[Path], bool] = any_file, overwrite: bool = False,
                inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary path beside `path` (checked with `check_file`, again before it is
    replaced); on success it is renamed to `path`, on error or interruption removed, with the
    parent folders created for it."""
    path = Path(path)
    ids = input_ids(inputs)
    _check_file(path, owned, overwrite, ids)
    created = _make_folders(path.absolute().parent)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.absolute().parent)
        os.close(handle)
        temporary = Path(temporary)
        try:
            yield temporary
            temporary.chmod(0o666 & ~_umask())
            with critical():
                _check_file(path, owned, overwrite, ids)
                os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    except BaseException:
        _remove_folders(created)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class RecordedFolder:
    """A folder whose files sevc writes one at a time (a training run): each atomically, each
    recorded in the folder's manifest as it is written."""

    def __init__(self, path: str | os.PathLike, kind: OutputKind):
        self.path = Path(path)
        self.kind = kind
        self.overwrite = False
        self.created: List[Path] = []
        self.written: Set[str] = set()

    def open(self, fresh: bool, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
        """Create the folder if needed (check it first with `check_folder`); `fresh`: remove
        sevc's files of an earlier output there; `overwrite`: sevc's files changed since may be
        replaced."""
        self.overwrite = overwrite
        existed = os.path.lexists(self.path)
        self.created = _make_folders(self.path)
        with critical():
            manifest = Manifest.read(self.path) or Manifest(self.kind.name)
            if fresh and existed:
                for relative in _replaceable(self.path, self.kind, overwrite, input_ids(inputs), set()):
                    _remove(self.path, relative)
                    manifest.files.pop(relative, None)
            manifest.write(self.path)

    def _check(self, relative: str) -> Manifest:
        """The manifest, after checking that `relative` is absent or sevc's (listed, and unchanged
        unless `overwrite`)."""
        manifest = Manifest.read(self.path) or Manifest(self.kind.name)
        path = self.path / relative
        if not os.path.lexists(path):
            return manifest
        if path.is_symlink() or not path.is_file() or relative not in manifest.files:
            raise OutputError(f"{path} is in the way of the output, and sevc never replaces a file it did not write; "
                              "it is left as it is and the run stops")
        if not self.overwrite and not manifest.lists(relative, path):
            raise OutputError(f"{path} changed since sevc wrote it; it is left as it is and the run stops "
                              "(--overwrite replaces such files)")
        return manifest

    @contextlib.contextmanager
    def replace(self, relative: str) -> Iterator[Path]:
        """Yield a temporary path in the folder; on success it replaces `relative` (see `_check`)."""
        handle, temporary = tempfile.mkstemp(prefix=f".{relative}.", suffix=".partial", dir=self.path)
        os.close(handle)
        temporary = Path(temporary)
        try:
            yield temporary
            temporary.chmod(0o666 & ~_umask())
            new = record(temporary)
            with critical():
                manifest = self._check(relative)
                manifest.files[relative] = manifest.files.get(relative, []) + [new]
                manifest.write(self.path)
                os.replace(temporary, self.path / relative)
                manifest.files[relative] = [new]
                manifest.write(self.path)
                self.written.add(relative)
        finally:
            temporary.unlink(missing_ok=True)

    def append(self, relative: str, text: str) -> None:
        """Append `text` to the file `relative` (created if needed; see `_check`)."""
        with critical():
            manifest = self._check(relative)
            with open(self.path / relative, "a") as file:
                file.write(text)
            manifest.files[relative] = [record(self.path / relative)]
            manifest.write(self.path)
            self.written.add(relative)

    def discard(self) -> None:
        """Remove what was written since `open` (and the manifest and folders, if nothing else is left)."""
        with critical():
            manifest = Manifest.read(self.path) or Manifest(self.kind.name)
            for relative in self.written:
                with contextlib.suppress(OSError):
                    _remove(self.path, relative)
                manifest.files.pop(relative, None)
            if manifest.files:
                manifest.write(self.path)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(self.path / MANIFEST)
            _remove_folders(self.created)
