"""Values derived from a tensor (a weight's grids or integers, a bias in float64, a rate's fine
levels), computed once per tensor and variant, again when the tensor's values or storage change,
and dropped when the tensor is garbage collected.

Tensors compare elementwise, so `weakref.WeakKeyDictionary` cannot key on them: the entries are
keyed by id(tensor) and removed by a weak reference's callback when the tensor dies (before its
id can be reused).
"""
from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, Generic, Hashable, Tuple, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    tensor: weakref.ref
    state: tuple
    value: T


def _state(tensor: torch.Tensor) -> tuple:
    """What changes when a tensor's values do: its version counter (in-place changes), its storage
    and device."""
    return tensor._version, tensor.data_ptr(), tensor.device


class TensorCache(Generic[T]):
    """make(tensor, *variant), remembered per tensor and variant for as long as the tensor lives
    (a value that refers to its tensor, as an autograd graph does, keeps it alive: make detaches)."""

    def __init__(self, make: Callable[..., T]):
        self._make = make
        self._entries: Dict[Tuple[Hashable, ...], _Entry[T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, tensor: torch.Tensor, *variant: Hashable) -> T:
        key = (id(tensor), *variant)
        state = _state(tensor)
        entry = self._entries.get(key)
        if entry is not None and entry.tensor() is tensor and entry.state == state:
            return entry.value
        value = self._make(tensor, *variant)
        self._entries[key] = _Entry(weakref.ref(tensor, functools.partial(self._drop, key)), state, value)
        return value

    def _drop(self, key: Tuple[Hashable, ...], dead: weakref.ref) -> None:
        """The callback of an entry's weak reference: its tensor is being collected."""
        entry = self._entries.get(key)
        if entry is not None and entry.tensor is dead:
            del self._entries[key]
