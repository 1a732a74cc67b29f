"""BD-rate tables and RD curves on result files made from known curves."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sevc.cli import bdrate
from sevc.rd_report import bd_rate, dataset_bd_rates

from conftest import assert_clear_error, cli

BPP = np.array([0.02, 0.05, 0.1, 0.2])


def results(rate_factor: float, msssim: bool = True, datasets=("HEVC_B", "UVG")) -> dict:
    """Two sequences per dataset; quality is a fixed function of log(bpp / rate_factor), so this
    codec needs `rate_factor` times the anchor's rate for the same quality everywhere."""
    out = {}
    for d, dataset in enumerate(datasets):
        out[dataset] = {}
        for s in range(2):
            out[dataset][f"seq{s}"] = {}
            for r, bpp in enumerate(BPP * (1 + 0.3 * s + 0.1 * d)):
                quality = 36 + 4 * np.log(bpp) + s + d
                out[dataset][f"seq{s}"][f"{r:03d}"] = {
                    "ave_all_frame_bpp": bpp * rate_factor, "ave_all_frame_psnr": quality,
                    "ave_all_frame_msssim": 0.9 + 0.002 * quality if msssim else None}
    return out


def test_bd_rate_of_a_curve_against_itself_shifted_in_rate():
    quality = 30 + 3 * np.log(BPP)
    assert bd_rate((BPP, quality), (BPP * 0.8, quality)) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate((BPP, quality), (BPP, quality)) == pytest.approx(0.0, abs=1e-9)


def test_dataset_tables_average_over_sequences_then_datasets():
    table = dataset_bd_rates(results(1.0), results(0.75), "psnr")
    assert table == pytest.approx({"HEVC_B": -25.0, "UVG": -25.0, "Average": -25.0}, abs=1e-9)
    table = dataset_bd_rates(results(1.0), results(1.1, datasets=("HEVC_B",)), "msssim")
    assert table == pytest.approx({"HEVC_B": 10.0, "Average": 10.0}, abs=1e-9)


def test_bd_rate_command_writes_json_markdown_and_plots(tmp_path, capsys):
    for name, factor, msssim in (("vtm", 1.0, True), ("ours", 0.7, True), ("small", 0.9, False)):
        (tmp_path / f"{name}.json").write_text(json.dumps(results(factor, msssim)))
    out = tmp_path / "report"
    status, stdout, _ = cli(bdrate.main, ["--anchor", f"VTM={tmp_path / 'vtm.json'}", "--test",
                                          f"SEVC={tmp_path / 'ours.json'}", tmp_path / "small.json", "-o", out], capsys)
    assert status == 0 and "| SEVC | -30.0 | -30.0 | -30.0 |" in stdout
    summary = json.loads((out / "bd_rate.json").read_text())
    assert summary["anchor"] == "VTM"
    assert summary["bd_rate"]["psnr"]["small"]["Average"] == pytest.approx(-10.0, abs=1e-9)
    assert "small" not in summary["bd_rate"]["msssim"]  # no MS-SSIM in that file
    markdown = (out / "bd_rate.md").read_text()
    assert "| codec | HEVC_B | UVG | Average |" in markdown and "MS-SSIM" in markdown
    assert sorted(p.name for p in out.glob("*.png")) == [
        "rd_HEVC_B_msssim.png", "rd_HEVC_B_psnr.png", "rd_UVG_msssim.png", "rd_UVG_psnr.png"]


def test_bd_rate_command_bad_input(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(results(1.0)))
    (tmp_path / "b.json").write_text(json.dumps(results(1.0, datasets=("Other",))))
    result = cli(bdrate.main, ["--anchor", tmp_path / "a.json", "--test", tmp_path / "b.json", "-o", tmp_path / "o"],
                 capsys)
    assert_clear_error(result, "no sequence with psnr results is in both files")
    assert not (tmp_path / "o").exists()
