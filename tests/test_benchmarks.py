"""Every script in benchmarks/ runs, in a tiny configuration (seconds), so that none rots.

These are not timings: each script's own checks (bit-equal kernels, decoder == encoder, round
trips) are read from its output.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

BENCHMARKS = REPO / "benchmarks"
TINY = {
    "codec_speed.py": (["--width", "64", "--height", "64", "--frames", "2", "--arithmetic", "fp32", "integer"],
                       "decoded frames equal the encoder's: fp32 yes, integer yes"),
    "numerics_speed.py": (["--sizes", "64x64", "--frames", "2", "--threads", "1", "--rounds", "1", "--rss"],
                          " 64x64  decode |"),
    "exact_conv.py": (["--threads", "1", "--repeats", "1", "--shrink", "16"], "equal"),
    "integer_conv.py": (["--threads", "1", "--repeats", "1", "--shrink", "16"], "equal"),
    "portable_math.py": (["--threads", "1", "--repeat", "1", "--shrink", "64"], "softmax"),
    "rans_throughput.py": (["--symbols", "20000", "--repeats", "1"], "bits/symbol"),
    "train_sanity.py": (["--i_steps", "2", "--i_noisy_steps", "1", "--base_steps", "2", "--base_noisy_steps", "1",
                         "--batch", "2", "--base_batch", "2", "--base_crop", "64", "--log_every", "1",
                         "--held_out_frames", "2", "--threads", "1"], "P bits / I bits"),
}


def test_every_benchmark_is_covered():
    assert sorted(path.name for path in BENCHMARKS.glob("*.py")) == sorted(TINY)


@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs(script):
    args, expected = TINY[script]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in result.stdout, result.stdout
    assert "DIFFER" not in result.stdout and " NO" not in result.stdout, result.stdout
