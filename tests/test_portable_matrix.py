"""The cross-kernel matrix of the portable modes: the same clips coded in separate processes under
every kernel configuration give the same bytes and decode to the same frames (full and skim),
while float streams, for the record, do not survive the change. (A file of its own, so that
pytest-xdist runs it beside the rest of the suite.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sevc import _exact
from sevc.numerics import Numerics, integer

HERE = Path(__file__).resolve().parent
_KERNELS = _exact.integer_isas()
CONFIGURATIONS = {  # the kernel configurations of the matrix: environment, threads
    "default kernels": ({}, 1),
    "no vector kernels": ({"ATEN_CPU_CAPABILITY": "default", integer.KERNEL_ENV: "generic"}, 1),
    "oneDNN at SSE4.1, 2 threads": ({"ONEDNN_MAX_CPU_ISA": "SSE41",
                                     integer.KERNEL_ENV: "avx2" if "avx2" in _KERNELS else "generic"}, 2),
    **({"AVX-512 VNNI integer kernels, 2 threads": ({integer.KERNEL_ENV: "avx512"}, 2)}
       if "amx" in _KERNELS else {}),
}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Every configuration of the matrix codes the same clips (numerics_worker.py: integer numerics
    both, portable numerics the odd-size one, float both for the record), the single-threaded ones
    side by side; the last one also decodes the others' float payloads."""
    folder = tmp_path_factory.mktemp("matrix")
    worker = HERE / "numerics_worker.py"
    names = list(CONFIGURATIONS)
    reports = {name: folder / f"{index}.json" for index, name in enumerate(names)}

    def start(name: str, *float_streams: Path) -> subprocess.Popen:
        environment, threads = CONFIGURATIONS[name]
        command = [sys.executable, str(worker), str(threads), str(reports[name]), *map(str, float_streams)]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **environment, "OMP_NUM_THREADS": str(threads)})

    def finish(*processes: subprocess.Popen) -> None:
        for process in processes:
            _, err = process.communicate(timeout=900)
            assert process.returncode == 0, err[-3000:]

    finish(*[start(name) for name in names[:-1]])
    finish(start(names[-1], *[reports[name].with_suffix(".float") for name in names[:-1]]))
    return {name: json.loads(reports[name].read_text())["results"] for name in names}


@pytest.mark.slow
@pytest.mark.parametrize("clip,mode", [("carphone", Numerics.INTEGER), ("odd_size", Numerics.INTEGER),
                                       ("odd_size", Numerics.PORTABLE)], ids=str)
def test_portable_streams_are_the_same_under_every_kernel_configuration(matrix, clip, mode):
    results = [report[f"{clip}/{mode}"] for report in matrix.values()]
    for key in ("payloads", "encoder_full", "encoder_skim", "decoded_full", "decoded_skim"):
        assert len({r[key] for r in results}) == 1, (key, [r[key][:12] for r in results])
    assert all(r["decoder_equals_encoder"] for r in results)


@pytest.mark.slow
def test_float_streams_for_the_record(matrix, figures):
    """Float mode is not portable (not a requirement, the documented contrast): what the last
    configuration made of the others' float streams."""
    names = list(matrix)
    for clip in ("carphone", "odd_size"):
        outcomes = matrix[names[-1]][f"{clip}/float"]["other_machine_float_streams"]
        for index, name in enumerate(names[:-1]):
            figures(f"float stream of the {name}, decoded with {names[-1]} ({clip}): {outcomes[str(index)]}")
    assert all(report[f"{clip}/float"]["decoder_equals_encoder"] for report in matrix.values()
               for clip in ("carphone", "odd_size"))
