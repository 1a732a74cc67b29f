"""The rANS entropy coder as the codecs use it: symbols and table indexes in, one payload out."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import _rans
from ..errors import BitstreamError
from ..numerics import Numerics, current, use_numerics

PRECISION = 16        # CDF tables sum to 2 ** PRECISION
SYMBOL_LIMIT = 30000  # symbols are clamped to +-SYMBOL_LIMIT and coded as int16
CdfTables = _rans.CdfTables


class TablesPerMode:
    """An entropy model's rANS tables, built by `build` once per numerics mode, when first asked
    for (in that mode)."""

    def __init__(self, build: Callable[[], CdfTables]):
        self._build = build
        self._built: Dict[Numerics, CdfTables] = {}

    def __call__(self, mode: Optional[Numerics] = None) -> CdfTables:
        """The tables of `mode` (default: the current one)."""
        mode = current() if mode is None else mode
        if mode not in self._built:
            with use_numerics(mode):
                self._built[mode] = self._build()
        return self._built[mode]

    def clear(self) -> None:
        """Forget every mode's tables (after the model's parameters changed)."""
        self._built.clear()

    def __getstate__(self) -> dict:
        """Built tables are a cache of C++ objects: a pickled copy builds its own when asked."""
        return {"_build": self._build, "_built": {}}


class EntropyCoder:
    """One rANS stream: an encoder (1..16 parts, optional background thread) and a decoder.

    Encoding queues each call's symbols and indexes where they are (CPU or GPU) and moves all
    of them to the host at once when the payload is finished.
    """

    def __init__(self, ec_thread: bool = False, stream_part: int = 1):
        self.encoder = _rans.RansEncoder(stream_part, ec_thread)
        self.decoder = _rans.RansDecoder()
        self._queued: List[Tuple[torch.Tensor, torch.Tensor, CdfTables]] = []

    def reset(self) -> None:
        """Start a new payload."""
        self.encoder.reset()
        self._queued = []

    def encode(self, symbols: torch.Tensor, indexes: torch.Tensor, tables: CdfTables) -> None:
        """Queue symbols (integer-valued, any shape) coded with the tables `indexes` selects
        (one per symbol; a negative index marks a symbol whose entropy model is undefined)."""
        self._queued.append((symbols.reshape(-1), indexes.reshape(-1), tables))

    def flush(self) -> bytes:
        """Code everything queued since `reset` and return the payload."""
        if self._queued:
            symbols = torch.cat([s for s, _, _ in self._queued]).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT)
            symbols = symbols.to(torch.int16).cpu().numpy()
            indexes = _host_indexes(torch.cat([i for _, i, _ in self._queued]))
            start = 0
            for queued, _, tables in self._queued:  # one coder call per queued call: parts split each call
                end = start + queued.numel()
                self.encoder.encode(symbols[start:end], indexes[start:end], tables)
                start = end
            self._queued = []
        self.encoder.flush()
        return self.encoder.get_encoded_stream()

    def set_stream(self, stream: bytes) -> None:
        """Start decoding a payload."""
        try:
            self.decoder.set_stream(bytes(stream))
        except ValueError as exc:
            raise BitstreamError(str(exc)) from None

    def decode(self, indexes: torch.Tensor, tables: CdfTables) -> torch.Tensor:
        """Decode one symbol per index; a float32 tensor shaped like `indexes`, on the CPU."""
        try:
            values = self.decoder.decode(_host_indexes(indexes.reshape(-1)), tables)
        except ValueError as exc:
            raise BitstreamError(str(exc)) from None
        return torch.from_numpy(values.astype(np.float32)).reshape(indexes.shape)

    def finish(self) -> None:
        """Check that the payload was decoded exactly to its end; call it after the last `decode`.

        Raises BitstreamError when bytes are left over (trailing data, or fewer symbols decoded
        than were coded) or the final rANS state is wrong (a corrupted stream).
        """
        try:
            self.decoder.finish()
        except ValueError as exc:
            raise BitstreamError(str(exc)) from None


def _host_indexes(indexes: torch.Tensor) -> np.ndarray:
    """Table indexes as an int32 host array; a negative one (an undefined model) is an error."""
    host = indexes.to(torch.int32).cpu().numpy()
    if host.size and host.min() < 0:
        raise BitstreamError("corrupted bitstream: non-finite entropy-model scale (NaN or infinity)")
    return host


def pmf_to_cdf_tables(pmf: torch.Tensor, tail_mass: torch.Tensor, pmf_length: torch.Tensor,
                      offset: torch.Tensor) -> CdfTables:
    """Quantized CDF tables from per-row pmfs [n, L] (first pmf_length[i] used) and tail masses [n, 1].

    Each row codes pmf_length[i] values starting at offset[i], plus one escape symbol
    carrying the tail mass.
    """
    n = len(pmf_length)
    max_length = int(pmf_length.max())
    cdfs = np.zeros((n, max_length + 2), dtype=np.int32)
    for i in range(n):
        row = torch.cat((pmf[i, : pmf_length[i]], tail_mass[i]), dim=0)
        cdf = _rans.pmf_to_quantized_cdf(row.tolist(), PRECISION)
        cdfs[i, : len(cdf)] = cdf
    lengths = (pmf_length + 2).reshape(-1).int().cpu().numpy()
    return CdfTables(cdfs, lengths, offset.reshape(-1).int().cpu().numpy())
