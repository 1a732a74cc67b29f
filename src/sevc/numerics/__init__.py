"""Numerics modes: how the models' arithmetic is carried out.

- `Numerics.FLOAT`: the published models' float arithmetic (float32, PyTorch's kernels). Fast,
  and what the official checkpoints were evaluated with, but its results depend on the kernels
  that ran (summation order, vector width, libm), so a stream may not decode on another machine.
- `Numerics.PORTABLE`: every value the decoder recomputes is bit-identical on every CPU and GPU.
  Tensors are float64; every sum whose order a kernel may choose (convolutions, matrix products,
  normalization statistics, softmax) is exact because its terms are fixed-point numbers whose
  partial sums fit in float64's 53-bit significand (`sevc.numerics.exact`); every elementwise
  function is a fixed sequence of correctly rounded IEEE-754 operations (+, -, *, /, sqrt,
  rounding, comparisons; `sevc.numerics.functions`), never a libm transcendental; resampling and
  warping are explicit formulas evaluated in a fixed order; entropy-model table indexes come from
  comparisons with precomputed thresholds.
- `Numerics.INTEGER`: bit-identical everywhere too, at the speed of float: tensors are float32,
  convolutions and linear layers exact sums of 16-bit integers computed by integer units
  (`sevc.numerics.integer`); everything else as in portable mode (the latent prior's few
  reductions through its exact float64 sums, rounded back to float32).

Both portable modes (`is_portable()`) share the explicit resampling and the entropy models'
tables and indexes; they differ in the arithmetic of the layers.

The mode is a context, like `torch.no_grad()`: `with use_numerics(Numerics.PORTABLE): ...`. The
models read it in every numerics-dependent operation (`sevc.nn.ops`, `sevc.nn.resample`, the
entropy models); `VideoCodec` sets it from its `numerics` argument or the stream's header.
"""
from __future__ import annotations

import contextlib
import contextvars
from enum import IntEnum
from typing import ContextManager, Iterator, Optional

import torch


class _Named(IntEnum):
    """An enumeration whose members are called by their lower-case names on command lines."""

    @classmethod
    def named(cls, name: str):
        """The member called `name`."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown {cls.__name__.lower()} {name!r} "
                             f"({' or '.join(str(member) for member in cls)})") from None

    def __str__(self) -> str:
        return self.name.lower()


class Numerics(_Named):
    """A numerics mode; its value is what the sevc container's header records."""

    FLOAT = 0
    PORTABLE = 1
    INTEGER = 2

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the models compute in."""
        return torch.float64 if self is Numerics.PORTABLE else torch.float32

    @property
    def portable(self) -> bool:
        """Whether results are bit-identical on every machine (portable and integer modes)."""
        return self is not Numerics.FLOAT


class Precision(_Named):
    """The precision of float numerics: float32 (the published arithmetic) or mixed precision
    (torch.autocast in bfloat16 / float16; the entropy models' likelihoods stay float32). Its
    value is what the sevc container's header records (flags bits 1-2). Portable numerics has
    no precision but its own (float64)."""

    FP32 = 0
    BF16 = 1
    FP16 = 2

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        """The dtype torch.autocast runs the models in (None: no autocast)."""
        return {Precision.FP32: None, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[self]

    def autocast(self, device_type: str) -> ContextManager:
        """A context running the block in this precision on `device_type` ('cpu', 'cuda')."""
        dtype = self.autocast_dtype
        return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


def describe(mode: Numerics, precision: Precision = Precision.FP32) -> str:
    """'portable numerics', 'float numerics' or 'float numerics, bf16' (for messages)."""
    return f"{mode} numerics" + ("" if precision is Precision.FP32 else f", {precision}")


_CURRENT: contextvars.ContextVar[Numerics] = contextvars.ContextVar("sevc_numerics", default=Numerics.FLOAT)


def current() -> Numerics:
    """The numerics mode in effect."""
    return _CURRENT.get()


def is_portable() -> bool:
    """Whether the mode in effect is one of the portable ones (portable or integer)."""
    return _CURRENT.get().portable


def in_mode_dtype(x: torch.Tensor) -> torch.Tensor:
    """x in the dtype of the portable mode in effect (float64, or float32 in integer mode); as it
    is in float mode."""
    mode = _CURRENT.get()
    return x.to(mode.dtype) if mode.portable else x


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 if it is in a narrower type (a mixed-precision float, an integer), else as it is."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


@contextlib.contextmanager
def use_numerics(mode: Numerics) -> Iterator[Numerics]:
    """Run the block in numerics mode `mode`."""
    token = _CURRENT.set(Numerics(mode))
    try:
        yield Numerics(mode)
    finally:
        _CURRENT.reset(token)
