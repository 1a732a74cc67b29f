"""Reading input files safely: a file is checked before it is read, and read with a bound.

Every file sevc reads is opened without blocking and checked to be a regular file (a FIFO, a
device, a socket or a folder where a file is expected is refused: reading one could block
forever or never end), and its size is checked against what it may hold before any of it is
read. JSON inputs are bounded in size and nesting depth.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from typing import BinaryIO, Iterator, Type

from ..errors import SevcError

JSON_LIMIT = 64 << 20  # bytes of a configuration or result file
JSON_DEPTH = 64        # nesting levels of objects and lists in a JSON input


def kind_of(mode: int) -> str:
    """A file type in words ('a FIFO', ...)."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a file"


def check_regular(path: str | os.PathLike, what: str, error: Type[SevcError]) -> os.stat_result:
    """The status of `path` (links followed), which must be a regular file; else `error`, naming
    `what` the file should be ('checkpoint', ...)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(status.st_mode):
        raise error(f"{path} is {kind_of(status.st_mode)}, not a {what} file")
    return status


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, what: str, error: Type[SevcError], limit: int) -> Iterator[BinaryIO]:
    """`path` opened for reading, after checking that it is a regular file of at most `limit`
    bytes (opening never blocks, so a FIFO is refused too); else `error`."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise error(f"{path} is {kind_of(status.st_mode)}, not a {what} file")
        if status.st_size > limit:
            raise error(f"{path} has {status.st_size} bytes, more than a {what} file may have ({limit})")
        fcntl.fcntl(descriptor, fcntl.F_SETFL, fcntl.fcntl(descriptor, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        yield file


def read_bounded(path: str | os.PathLike, what: str, error: Type[SevcError], limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (see `open_regular`)."""
    with open_regular(path, what, error, limit) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise error(f"{path} grew beyond {limit} bytes while it was read")
    return data


def _depth(value: object) -> int:
    """How deeply lists and objects nest in a loaded JSON value (iteratively: no recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_json(path: str | os.PathLike, what: str, error: Type[SevcError], limit: int = JSON_LIMIT):
    """The JSON value of the file `path`, read with a bound (see `read_bounded`) and nested at
    most JSON_DEPTH levels deep; any problem is one `error` naming the file."""
    data = read_bounded(path, what, error, limit)
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise error(f"{path} is nested deeper than a {what} may be ({JSON_DEPTH} levels)") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not valid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON: {exc}") from None
    if _depth(value) > JSON_DEPTH:
        raise error(f"{path} is nested deeper than a {what} may be ({JSON_DEPTH} levels)")
    return value
