"""Constants of portable mode that float mode computes with platform-dependent libm calls (fine q
levels, the scale table): computed here in decimal arithmetic (pure software, correctly rounded,
so the same on every machine) and rounded once to float64."""
from __future__ import annotations

from decimal import Decimal, localcontext
from typing import List

PRECISION = 40  # decimal digits


def log_spaced(first: float, last: float, count: int) -> List[float]:
    """`count` values log-interpolated from `first` to `last` (both included):
    exp(ln first + k (ln last - ln first) / (count - 1)), each the float64 nearest to its
    40-digit value."""
    with localcontext() as context:
        context.prec = PRECISION
        start, end = Decimal(first).ln(), Decimal(last).ln()
        step = (end - start) / (count - 1)
        return [float((start + step * k).exp()) for k in range(count)]
