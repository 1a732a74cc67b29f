"""Loading checkpoints: the official SEVC / DCVC-DC `.pth.tar` files and sevc's own."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import warnings
import weakref
import zipfile
from typing import Dict, List, Tuple

import torch
from torch import nn

from ..errors import CheckpointError
from ..io.reading import check_regular

_WRAPPER_KEYS = ("state_dict", "net")
_LISTED_KEYS = 5
_SCANNED_PICKLE = 64 << 20  # bytes of a legacy (non-zip) checkpoint scanned for the objects it would build
_ALLOWED = ("torch.", "collections.OrderedDict")  # what a state_dict's pickle builds
_ZIP_MAGIC = b"PK\x03\x04"  # the signature a zip file starts with (its first local file header)
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def read_state_dict(path: str | os.PathLike) -> Dict[str, torch.Tensor]:
    """Read a state_dict from `path` with `torch.load(weights_only=True)`.

    Accepts a bare state_dict or one stored under ``state_dict`` / ``net``, and strips a
    ``module.`` prefix (checkpoints saved from DataParallel / DDP). Its keys must be names, its
    values real (not complex) tensors.
    """
    check_regular(path, "checkpoint", CheckpointError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = _load(path)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not a checkpoint"
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_load_failure(path, exc)}") from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a dict of tensors, possibly under "
                              "'state_dict' or 'net')")
    _check_entries(obj, path)
    prefix = "module."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def _load(path: str | os.PathLike):
    """torch.load with weights_only=True, memory-mapped when the file format allows it, a zip
    checkpoint (no second copy of the weights in memory while they are loaded into a model)."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip_checkpoint(path))


def _is_zip_checkpoint(path: str | os.PathLike) -> bool:
    """Whether the file starts as a zip file does: torch.save's format since PyTorch 1.6, the one
    torch.load memory-maps (the legacy format is a bare pickle)."""
    with open(path, "rb") as file:
        return file.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC


def _check_entries(state: Dict, path: str | os.PathLike) -> None:
    """CheckpointError unless every key is a name and every value a real tensor."""
    names = [key for key in state if not isinstance(key, str)]
    if names:
        raise CheckpointError(f"{path} does not hold a state_dict: its keys must be parameter names, not "
                              f"{type(names[0]).__name__} values ({names[0]!r})")
    for key, value in state.items():
        if value.is_complex():
            raise CheckpointError(f"{path}: {key} is complex ({value.dtype}); weights are real numbers")


def _load_failure(path: str | os.PathLike, exc: Exception) -> str:
    """Why torch.load(weights_only=True) failed, in one line: a refused Python object, or a file
    that is not a checkpoint."""
    unsafe = _python_objects(path) if isinstance(exc, pickle.UnpicklingError) else []
    if unsafe:
        return (f"it holds Python objects besides tensors ({', '.join(unsafe[:3])}), which "
                "torch.load(weights_only=True) refused: sevc never runs code from a checkpoint, and none ran")
    return "not a PyTorch file, or a damaged one"


def _python_objects(path: str | os.PathLike) -> List[str]:
    """The Python objects (module.name) other than torch's that the checkpoint's pickle would build,
    found by reading its opcodes, never by unpickling it; [] if there are none or it is no pickle."""
    names, strings = [], []
    try:
        for opcode, argument, _ in pickletools.genops(io.BytesIO(_pickle_of(path))):
            if opcode.name in _STRINGS:
                strings.append(str(argument))
            elif opcode.name in ("GLOBAL", "INST"):
                names.append(str(argument).replace(" ", ".").replace("__builtin__.", "builtins."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(".".join(strings[-2:]))
    except (ValueError, EOFError, UnicodeDecodeError, OSError, zipfile.BadZipFile):  # not (or no longer) a pickle
        pass
    return [name for name in names if not name.startswith(_ALLOWED)]


def _pickle_of(path: str | os.PathLike) -> bytes:
    """The first bytes of a checkpoint's pickle: `data.pkl` of a zip checkpoint, else the file's."""
    if _is_zip_checkpoint(path):
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return b""
            with archive.open(name) as member:
                return member.read(_SCANNED_PICKLE)
    with open(path, "rb") as file:
        return file.read(_SCANNED_PICKLE)


def _listing(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_LISTED_KEYS])
    more = f" and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else ""
    return shown + more


def named_parameters(model: nn.Module) -> Dict[str, nn.Parameter]:
    """{checkpoint name: parameter} of `model` (the state_dict's names: a latent codec's networks
    have their published names, see `sevc.latent_codecs.base`)."""
    return {name: value for name, value in model.state_dict(keep_vars=True).items() if isinstance(value, nn.Parameter)}


def load_weights(model: nn.Module, state_dict: Dict[str, torch.Tensor], strict: bool = True,
                 source: str = "checkpoint") -> None:
    """Load `state_dict` into `model`, turning any mismatch into one CheckpointError."""
    own = model.state_dict()
    wrong_shape = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    problems = []
    if wrong_shape:
        problems.append(f"wrong shapes for {_listing(wrong_shape)}")
    if strict and missing:
        problems.append(f"missing keys {_listing(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=strict)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Read `path` and load it into `model` (see `read_state_dict` and `load_weights`)."""
    load_weights(model, read_state_dict(path), strict=strict, source=str(path))
    return model


_DIGESTS: "weakref.WeakKeyDictionary[nn.Module, Tuple[tuple, bytes]]" = weakref.WeakKeyDictionary()


def _digest(model: nn.Module) -> bytes:
    """SHA-256 of a model's state_dict names and values; remembered until a tensor changes."""
    state = model.state_dict()
    versions = tuple((key, value.data_ptr(), value._version) for key, value in state.items())
    remembered = _DIGESTS.get(model)
    if remembered is not None and remembered[0] == versions:
        return remembered[1]
    digest = hashlib.sha256()
    for key, value in state.items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    _DIGESTS[model] = (versions, digest.digest())
    return _DIGESTS[model][1]


def weights_id(*models: nn.Module) -> bytes:
    """8 bytes identifying the weights of `models` (SHA-256 of their state_dicts' names and values),
    recorded in sevc streams so that a decoder with other weights refuses them."""
    return hashlib.sha256(b"".join(_digest(model) for model in models)).digest()[:8]
