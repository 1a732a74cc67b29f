"""500 mutated sevc and official streams: each one decodes or is refused with a clear error,
in under 5 s, and the decoding process never holds more than 1 GB."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sevc.cli import encode
from sevc.cli.common import run

from conftest import model_args
from reference import FIXTURES

CASES = 500
SECONDS = 5.0
PEAK_RSS = 1 << 30


def _small_clip(folder: Path, frames: int = 2, size: int = 64) -> Path:
    """The first frames of case_a, cropped to size x size."""
    folder.mkdir()
    for k in range(frames):
        name = f"im{k + 1:05d}.png"
        Image.open(FIXTURES / "case_a" / "frames" / name).crop((0, 0, size, size)).save(folder / name)
    return folder


@pytest.mark.slow
def test_mutated_streams_fail_cleanly_fast_and_small(ckpt, tmp_path):
    clip = _small_clip(tmp_path / "clip")
    streams = tmp_path / "streams"
    streams.mkdir()
    base = ["-i", clip, "--width", 64, "--height", 64, "-q", 30, *model_args(ckpt)]
    for name, extra in (("full.sevc", ["--numerics", "float"]), ("fast.sevc", ["--fast", "1", "--numerics", "portable"]),
                        ("official", ["--format", "official"])):
        assert run(encode.main, [str(a) for a in base + ["-b", streams / name] + extra]) == 0
    report = tmp_path / "report.json"
    worker = Path(__file__).with_name("stream_fuzzer.py")
    result = subprocess.run([sys.executable, str(worker), str(streams), str(ckpt), str(CASES), "0", str(report)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr[-3000:]
    outcome = json.loads(report.read_text())
    cases = outcome["cases"]
    assert len(cases) == CASES
    slow = [c for c in cases if c["seconds"] >= SECONDS]
    assert not slow, slow[:3]
    growth = [(c["peak_rss"] >> 20, c["mutation"]) for c, previous in zip(cases, [{"peak_rss": 0}] + cases)
              if c["peak_rss"] > previous["peak_rss"] + (16 << 20)]
    assert outcome["peak_rss"] < PEAK_RSS, growth
    errors = [c for c in cases if c["outcome"].startswith("error: ")]
    assert all("\n" not in c["outcome"] for c in errors)
    # the sevc container's checksums catch every change that does not forge them (skim decoding
    # does not read enhancement payloads, and a header field may be rewritten to its own value)
    unforged = [c for c in cases if c["mutation"].split(":")[0].endswith(".sevc") and "forged" not in c["mutation"]
                and "= " not in c["mutation"] and not c["skim"]]
    assert all(c["outcome"] != "decoded" for c in unforged), [c for c in unforged if c["outcome"] == "decoded"][:3]
