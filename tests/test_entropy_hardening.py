"""The rANS bindings and entropy models reject bad input with clear errors, never crash or hang."""
from __future__ import annotations

import json
import math
import resource
import time
import warnings

import numpy as np
import pytest
import torch

from sevc import _rans
from sevc.entropy.coder import EntropyCoder
from sevc.entropy.scale_table import ScaleTableModel
from sevc.errors import BitstreamError
from sevc.models.intra import IntraNoAR
from sevc.models.rate import Rate

from conftest import stand_in_model
from reference import FIXTURES, case_info

RANS = FIXTURES / "rans"


def _tables(n: int = 6, length: int = 12):
    """n tables of `length` - 1 symbols each (the last one the escape), offsets -5."""
    cdfs = np.zeros((n, length), np.int32)
    for i in range(n):
        pmf = np.linspace(1.0, 2.0 + i, length - 1).astype(np.float32)
        cdfs[i] = _rans.pmf_to_quantized_cdf((pmf / pmf.sum()).tolist(), 16)
    return _rans.CdfTables(cdfs, np.full(n, length, np.int32), np.full(n, -5, np.int32))


def _stream(symbols: np.ndarray, indexes: np.ndarray, tables, parts: int = 1) -> bytes:
    encoder = _rans.RansEncoder(parts, False)
    encoder.encode(symbols, indexes, tables)
    encoder.flush()
    return encoder.get_encoded_stream()


def _data(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    symbols = rng.integers(-40, 40, size=n).astype(np.int16)  # in range and escaped values
    indexes = rng.integers(0, 6, size=n).astype(np.int32)
    return symbols, indexes


# --- None, dtypes, shapes -------------------------------------------------------------------------

def test_none_arguments_raise_type_error_instead_of_crashing():
    tables = _tables()
    symbols, indexes = _data(10)
    encoder = _rans.RansEncoder()
    decoder = _rans.RansDecoder()
    decoder.set_stream(_stream(symbols, indexes, tables))
    with pytest.raises(TypeError, match="tables must be a CdfTables, not None"):
        encoder.encode(symbols, indexes, None)
    with pytest.raises(TypeError, match="tables must be a CdfTables, not None"):
        decoder.decode(indexes, None)
    with pytest.raises(TypeError, match="symbols must be an integer array, not None"):
        encoder.encode(None, indexes, tables)
    with pytest.raises(TypeError, match="indexes must be an integer array, not None"):
        encoder.encode(symbols, None, tables)
    with pytest.raises(TypeError, match="indexes must be an integer array, not None"):
        decoder.decode(None, tables)
    with pytest.raises(TypeError, match="stream must be bytes, not NoneType"):
        decoder.set_stream(None)
    with pytest.raises(TypeError, match="stream must be bytes, not str"):
        decoder.set_stream("abc")
    for i in range(3):
        args = [np.zeros((1, 2), np.int32), np.array([2], np.int32), np.array([0], np.int32)]
        args[i] = None
        with pytest.raises(TypeError, match="must be an integer array, not None"):
            _rans.CdfTables(*args)
    with pytest.raises(TypeError):
        _rans.pmf_to_quantized_cdf(None, 16)
    # the decoder still works after all that
    np.testing.assert_array_equal(decoder.decode(indexes, tables), symbols)


@pytest.mark.parametrize("bad", [np.zeros(4, np.float32), np.zeros(4, np.float64), np.zeros(4, bool),
                                 np.array([1, None, 2, 3], dtype=object), [0.0, 1.5, 2.0, 3.0], "abcd"])
def test_non_integer_arrays_rejected_not_cast(bad):
    tables = _tables()
    symbols, indexes = _data(4)
    encoder = _rans.RansEncoder()
    with pytest.raises(TypeError, match="symbols must be an integer array"):
        encoder.encode(bad, indexes, tables)
    with pytest.raises(TypeError, match="indexes must be an integer array"):
        encoder.encode(symbols, bad, tables)
    decoder = _rans.RansDecoder()
    decoder.set_stream(_stream(symbols, indexes, tables))
    with pytest.raises(TypeError, match="indexes must be an integer array"):
        decoder.decode(bad, tables)
    with pytest.raises(TypeError, match="cdfs must be an integer array"):
        _rans.CdfTables(np.array([[0.0, 65536.0]]), np.array([2], np.int32), np.array([0], np.int32))


def test_values_outside_the_coded_types_rejected():
    tables = _tables()
    encoder = _rans.RansEncoder()
    with pytest.raises(ValueError, match=r"symbols must fit in int16, got values -5\.\.40000"):
        encoder.encode(np.array([-5, 40000], np.int32), np.zeros(2, np.int32), tables)
    with pytest.raises(ValueError, match="indexes must fit in int32"):
        encoder.encode(np.zeros(2, np.int16), np.array([0, 2**40], np.int64), tables)
    with pytest.raises(ValueError, match="indexes must fit in int32"):
        encoder.encode(np.zeros(1, np.int16), np.array([2**64 - 1], np.uint64), tables)
    with pytest.raises(ValueError, match="symbols must fit in int16"):
        encoder.encode(np.array([65535], np.uint16), np.zeros(1, np.int32), tables)
    with pytest.raises(ValueError, match="outside the 6 tables"):  # in int32, not a table
        encoder.encode(np.zeros(2, np.int16), np.array([0, 6], np.int64), tables)


def test_integer_arrays_of_any_type_shape_and_layout_code_the_same_stream():
    tables = _tables()
    symbols, indexes = _data(60)
    reference = _stream(symbols, indexes, tables)
    as_matrix = (symbols.astype(np.int64).reshape(6, 10), indexes.astype(np.uint8).reshape(6, 10))
    strided = (np.repeat(symbols, 2)[::2], np.repeat(indexes.astype(np.int16), 2)[::2])
    as_lists = (symbols.tolist(), indexes.tolist())
    for sym, idx in (as_matrix, strided, as_lists):
        assert _stream(sym, idx, tables) == reference
    decoder = _rans.RansDecoder()
    decoder.set_stream(reference)
    decoded = decoder.decode(indexes.reshape(3, 20), tables)  # decoded in C order, shaped like indexes
    assert decoded.dtype == np.int16 and decoded.shape == (3, 20)
    np.testing.assert_array_equal(decoded.reshape(-1), symbols)
    decoder.finish()
    empty = _stream([], [], tables)
    decoder.set_stream(empty)
    assert decoder.decode([], tables).shape == (0,)
    decoder.finish()


def test_table_arrays_validated():
    cdf = np.array([[0, 30000, 65536, 0]], np.int32)
    one, zero = np.array([3], np.int32), np.array([0], np.int32)
    assert len(_rans.CdfTables(cdf, one, zero)) == 1
    with pytest.raises(ValueError, match=r"cdfs must be a 2-D array .* got shape \(4,\)"):
        _rans.CdfTables(cdf[0], one, zero)
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 4\)"):
        _rans.CdfTables(cdf[None], one, zero)
    with pytest.raises(ValueError, match=r"got shape \(0, 4\)"):
        _rans.CdfTables(cdf[:0], one[:0], zero[:0])
    with pytest.raises(ValueError, match=r"lengths must be a 1-D array of 1 entries .* got shape \(2,\)"):
        _rans.CdfTables(cdf, np.array([3, 3], np.int32), zero)
    with pytest.raises(ValueError, match=r"offsets must be a 1-D array of 1 entries .* got shape \(1, 1\)"):
        _rans.CdfTables(cdf, one, zero[None])
    with pytest.raises(ValueError, match="CDF table 0: length out of range"):
        _rans.CdfTables(cdf, np.array([5], np.int32), zero)
    with pytest.raises(ValueError, match="CDF table 0: offset outside the int16 range"):
        _rans.CdfTables(cdf, one, np.array([-40000], np.int32))
    with pytest.raises(ValueError, match="cdfs must fit in int32"):
        _rans.CdfTables(cdf.astype(np.int64) * 2**32, one, zero)


def test_stream_part_checked_before_allocating():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    for parts in (30_000_000, 17, 0, -1):
        with pytest.raises(ValueError, match=f"stream_part must be in 1..16, got {parts}"):
            _rans.RansEncoder(parts)
    assert time.perf_counter() - start < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024
    assert _rans.RansEncoder(16).stream_part == 16


# --- pmf_to_quantized_cdf ---------------------------------------------------------------------------

def _quadratic_pmf_to_quantized_cdf(pmf, precision):
    """A plain-Python transcription of the original (quadratic) C++ pmf_to_quantized_cdf."""
    total_mass = 1 << precision
    cdf = [0] * (len(pmf) + 1)
    for i, p in enumerate(pmf):
        scaled = float(np.float32(p) * np.float32(total_mass))
        whole = math.floor(scaled)
        cdf[i + 1] = (whole + (scaled - whole >= 0.5)) if scaled > 0 else 0  # std::round
    total = sum(cdf)
    if total == 0:
        raise ValueError("pmf has no mass")
    cdf = [total_mass * v // total for v in cdf]
    for i in range(1, len(cdf)):
        cdf[i] += cdf[i - 1]
    cdf[-1] = total_mass
    n = len(pmf)
    for i in range(n):
        if cdf[i] != cdf[i + 1]:
            continue
        best_freq, best = None, -1
        for j in range(n):
            f = cdf[j + 1] - cdf[j]
            if f > 1 and (best_freq is None or f < best_freq):
                best_freq, best = f, j
        if best < 0:
            raise ValueError("pmf has more symbols than the precision allows")
        if best < i:
            for j in range(best + 1, i + 1):
                cdf[j] -= 1
        else:
            for j in range(i + 1, best + 1):
                cdf[j] += 1
    return cdf


def _random_pmf(rng) -> list:
    n = int(rng.integers(1, 160))
    kind = rng.integers(0, 4)
    if kind == 0:  # mostly zeros, a few masses
        pmf = np.zeros(n)
        pmf[rng.integers(0, n, size=int(rng.integers(1, 4)))] = rng.random()
    elif kind == 1:  # few distinct values: many frequency ties
        pmf = rng.choice([0.0, 1e-7, 0.01, 0.02, 0.3], size=n)
    elif kind == 2:  # tiny masses that round to zero next to a dominant one
        pmf = rng.random(n) * 10.0 ** -rng.integers(4, 9)
        pmf[rng.integers(0, n)] = 1.0
    else:  # a peaked, Laplace-like shape with long thin tails
        pmf = np.exp(-np.abs(np.arange(n) - n / 2) * rng.uniform(0.05, 2.0))
    if not pmf.any():
        pmf[0] = 0.5
    return (pmf / pmf.sum()).astype(np.float32).tolist()


def test_pmf_to_quantized_cdf_matches_the_quadratic_algorithm():
    rng = np.random.default_rng(2024)
    errors = 0
    for _ in range(400):
        pmf = _random_pmf(rng)
        precision = int(rng.choice([6, 8, 10, 12, 16]))
        try:
            expected = _quadratic_pmf_to_quantized_cdf(pmf, precision)
        except ValueError as exc:
            errors += 1
            with pytest.raises(ValueError, match=str(exc)):
                _rans.pmf_to_quantized_cdf(pmf, precision)
            continue
        assert _rans.pmf_to_quantized_cdf(pmf, precision) == expected, (pmf, precision)
    assert 0 < errors < 100  # both paths exercised


def test_pmf_to_quantized_cdf_is_fast_on_large_pmfs():
    rng = np.random.default_rng(3)
    many = np.zeros(300_000, np.float32)
    many[rng.integers(0, many.size, size=5000)] = rng.random(5000)
    many = (many / many.sum()).tolist()
    widest = [0.0] * 65536  # the most symbols 16 bits allow: 65535 of them steal from one
    widest[100] = 1.0
    start = time.perf_counter()
    with pytest.raises(ValueError, match="more symbols than the precision allows"):
        _rans.pmf_to_quantized_cdf(many, 16)
    cdf = _rans.pmf_to_quantized_cdf(widest, 16)
    assert time.perf_counter() - start < 0.5  # the quadratic version took 13.5 s and 3.2 s
    assert cdf == list(range(65537))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.25, 1e30])
def test_pmf_to_quantized_cdf_rejects_invalid_entries(bad):
    with pytest.raises(ValueError, match="pmf entry 1 is .*: entries must be finite, non-negative"):
        _rans.pmf_to_quantized_cdf([0.5, bad, 0.5], 16)
    assert _rans.pmf_to_quantized_cdf([0.5, -0.0, 0.5], 16) == [0, 32767, 32768, 65536]


# --- streams decoded exactly to their end -----------------------------------------------------------

@pytest.mark.parametrize("parts", [1, 3])
def test_finish_accepts_a_fully_decoded_stream_and_rejects_leftovers(parts):
    tables = _tables()
    symbols, indexes = _data()
    stream = _stream(symbols, indexes, tables, parts)
    decoder = _rans.RansDecoder()
    decoder.set_stream(stream)
    np.testing.assert_array_equal(decoder.decode(indexes, tables), symbols)
    decoder.finish()

    for tail in (b"\0\0\0\0", bytes(range(8)), stream[-8:]):  # trailing garbage, whole 32-bit words
        decoder.set_stream(stream + tail)
        np.testing.assert_array_equal(decoder.decode(indexes, tables), symbols)
        with pytest.raises(_rans.StreamError, match=f"rANS stream has {len(tail)} bytes left after its last symbol"):
            decoder.finish()


def test_finish_rejects_a_stream_decoded_with_fewer_symbols_than_coded():
    tables = _tables()
    symbols, indexes = _data()
    decoder = _rans.RansDecoder()
    for missing in (1, 2, 50, len(symbols)):
        decoder.set_stream(_stream(symbols, indexes, tables))
        decoder.decode(indexes[: len(indexes) - missing], tables)
        with pytest.raises(_rans.StreamError, match="rANS stream"):
            decoder.finish()
    # several parts: each encode call is split over the parts, so decode calls mirror them
    encoder = _rans.RansEncoder(3, False)
    encoder.encode(symbols[:1500], indexes[:1500], tables)
    encoder.encode(symbols[1500:], indexes[1500:], tables)
    encoder.flush()
    decoder.set_stream(encoder.get_encoded_stream())
    np.testing.assert_array_equal(decoder.decode(indexes[:1500], tables), symbols[:1500])
    with pytest.raises(_rans.StreamError, match="rANS stream"):
        decoder.finish()


def test_finish_on_published_streams():
    data = np.load(RANS / "rans_case.npz")
    tables = _rans.CdfTables(data["laplace_cdf"], data["laplace_cdf_length"], data["laplace_offset"])
    calls = json.loads((RANS / "rans_case.json").read_text())["calls"]
    decoder = _rans.RansDecoder()

    def decode(stream: bytes, calls) -> None:
        decoder.set_stream(stream)
        for lo, hi in calls:
            np.testing.assert_array_equal(decoder.decode(data["indexes"][lo:hi], tables), data["symbols"][lo:hi])

    for parts in (1, 2, 4):
        stream = (RANS / f"stream_part{parts}.bin").read_bytes()
        decode(stream, calls)
        decoder.finish()
        decode(stream + b"\x01\x02\x03\x04", calls)
        with pytest.raises(ValueError, match="4 bytes left after its last symbol"):
            decoder.finish()
        decode(stream, calls[:-1])
        with pytest.raises(ValueError, match="rANS stream"):
            decoder.finish()


def test_entropy_coder_finish_raises_bitstream_error():
    tables = _tables()
    symbols, indexes = _data(100)
    coder = EntropyCoder()
    with pytest.raises(BitstreamError, match="no rANS stream was set"):
        coder.finish()
    stream = _stream(symbols, indexes, tables)
    coder.set_stream(stream)
    coder.decode(torch.from_numpy(indexes), tables)
    coder.finish()
    coder.set_stream(stream + bytes(4))
    coder.decode(torch.from_numpy(indexes), tables)
    with pytest.raises(BitstreamError, match="4 bytes left after its last symbol"):
        coder.finish()


def test_i_frame_decompress_rejects_trailing_bytes_and_short_decodes():
    info = case_info("case_a")
    model = stand_in_model(IntraNoAR(), "i_frame", info["seed"])
    model.update(force=True)
    payload = (FIXTURES / "case_a" / "full" / "frame000_part0.bin").read_bytes()
    h, w = info["height"], info["width"]
    with torch.no_grad():
        model.decompress(payload, h, w, rate=Rate.level(info["q_index"]))  # the published payload is whole
        with pytest.raises(BitstreamError, match="8 bytes left after its last symbol"):
            model.decompress(payload + bytes(8), h, w, rate=Rate.level(info["q_index"]))
        with pytest.raises(BitstreamError, match="rANS stream"):
            model.decompress(payload, h // 2, w // 2, rate=Rate.level(info["q_index"]))  # fewer symbols


# --- non-finite scales -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scales_are_a_clear_bitstream_error(bad):
    model = ScaleTableModel("laplace")
    model.update()
    tables = _tables()
    coder = EntropyCoder()
    coder.set_stream(_stream(*_data(8), tables))
    scales = torch.full((1, 2, 2, 2), 0.5)
    scales[0, 1, 1, 0] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no numpy / torch RuntimeWarning on the way
        assert model.indexes(scales)[0, 1, 1, 0] == -1  # undefined: the coder refuses it
        with pytest.raises(BitstreamError, match="non-finite entropy-model scale"):
            model.decode(coder, scales)
        encoder = EntropyCoder()
        model.encode(encoder, torch.zeros_like(scales), scales)
        with pytest.raises(BitstreamError, match="non-finite entropy-model scale"):
            encoder.flush()
    assert model.indexes(torch.tensor([1e-9, 1e3, 1e9])).tolist() == [0, 255, 255]
