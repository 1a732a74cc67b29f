"""BD-rate tables and RD curves on result files made from known curves."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sevc.cli import bdrate
from sevc.eval.bd_rate import NotComparable, bd_rate, compare, dataset_bd_rates
from sevc.io.outputs import MANIFEST

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


def write(path, content) -> str:
    """Write `content` (JSON-dumped unless it is bytes) to `path`; the path as a string."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))
    return str(path)


def run_report(tmp_path, capsys, anchor, *tests):
    """bd_rate.py with the anchor as VTM and the test files as SEVC, SEVC2, ...; its result."""
    names = [f"SEVC{k or ''}={write(tmp_path / f'test{k}.json', test)}" for k, test in enumerate(tests)]
    return cli(bdrate.main, ["--anchor", f"VTM={write(tmp_path / 'anchor.json', anchor)}", "--test", *names,
                             "-o", tmp_path / "report"], capsys)


def corrupt(change) -> dict:
    """results(1.0) changed in place by `change`."""
    out = results(1.0)
    change(out)
    return out


MALFORMED = {
    "record not an object": (lambda r: r["UVG"]["seq0"].update({"002": 3}),
                             'UVG/seq0/"002": must be an object (a rate record), got 3'),
    "rates a list": (lambda r: r["UVG"].update(seq0=list(r["UVG"]["seq0"].values())),
                     'UVG/seq0: rates must be an object {"000": record, ...}, got a list'),
    "bpp a string": (lambda r: r["UVG"]["seq0"]["002"].update(ave_all_frame_bpp="0.1"),
                     'UVG/seq0/"002": ave_all_frame_bpp must be a number, got "0.1"'),
    "bpp a bool": (lambda r: r["UVG"]["seq0"]["002"].update(ave_all_frame_bpp=True),
                   'UVG/seq0/"002": ave_all_frame_bpp must be a number, got true'),
    "bpp null": (lambda r: r["UVG"]["seq0"]["002"].update(ave_all_frame_bpp=None),
                 'UVG/seq0/"002": ave_all_frame_bpp must be a number, got null'),
    "bpp missing": (lambda r: r["UVG"]["seq0"]["002"].pop("ave_all_frame_bpp"),
                    'UVG/seq0/"002": ave_all_frame_bpp is missing'),
    "psnr a string": (lambda r: r["HEVC_B"]["seq1"]["000"].update(ave_all_frame_psnr="35 dB"),
                      'HEVC_B/seq1/"000": ave_all_frame_psnr must be a number, got "35 dB"'),
    "msssim a string": (lambda r: r["HEVC_B"]["seq1"]["000"].update(ave_all_frame_msssim="0.9"),
                        'HEVC_B/seq1/"000": ave_all_frame_msssim must be a number or null, got "0.9"'),
    "dataset not an object": (lambda r: r.update(UVG=[1, 2]), "UVG: must be an object {sequence: {rate: record}}"),
    "dataset named Average": (lambda r: r.update(Average=r.pop("UVG")), "Average: a dataset may not be named Average"),
}


@pytest.mark.parametrize("case", MALFORMED)
@pytest.mark.parametrize("which", ["anchor", "test"])
def test_malformed_result_files_are_clear_errors(tmp_path, capsys, case, which):
    change, message = MALFORMED[case]
    files = {"anchor": results(1.0), "test": results(0.8), which: corrupt(change)}
    result = run_report(tmp_path, capsys, files["anchor"], files["test"])
    path = tmp_path / ("anchor.json" if which == "anchor" else "test0.json")
    assert_clear_error(result, f"{path}: {message}")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("content, message", [
    ([1, 2], "must be an object {dataset: {sequence: {rate: record}}}, got a list"),
    (b"\xff\xfe{", "is not valid JSON"), (b'{"UVG": ', "is not valid JSON")])
def test_result_files_that_are_not_result_files(tmp_path, capsys, content, message):
    assert_clear_error(run_report(tmp_path, capsys, results(1.0), content), str(tmp_path / "test0.json"), message)


QUALITY = 30 + 3 * np.log(BPP)


@pytest.mark.parametrize("anchor, test, reason", [
    ((BPP, QUALITY), (BPP, QUALITY + 20),
     "quality ranges do not overlap (anchor 18.2639 to 25.1717, test 38.2639 to 45.1717)"),
    ((BPP, QUALITY), (BPP[[0, 1, 1, 3]], QUALITY), "test has the same bpp (0.05) at two rates"),
    ((BPP, QUALITY[[0, 1, 1, 3]]), (BPP, QUALITY), "anchor has the same quality"),
    ((BPP, QUALITY), (BPP - 0.02, QUALITY), "test has a bpp of 0; bpp must be above 0"),
    ((BPP - 0.05, QUALITY), (BPP, QUALITY), "anchor has a bpp of -0.03; bpp must be above 0"),
    ((BPP, QUALITY), (BPP, np.array([1, 2, np.nan, 3])), "test has a quality that is not finite (nan)"),
    ((np.array([0.1, 0.2, 0.3, np.inf]), QUALITY), (BPP, QUALITY), "anchor has a bpp that is not finite (inf)"),
    ((BPP[:3], QUALITY[:3]), (BPP, QUALITY), "anchor has 3 rates, BD-rate needs at least 4"),
    ((BPP * 1e-200, QUALITY), (BPP * 1e200, QUALITY), "BD-rate is not finite (inf)"),
    ((BPP, QUALITY * 1e300), (BPP, QUALITY * 1e300), "the cubic fit failed"),
])
def test_curves_that_cannot_be_compared_have_a_reason_not_a_number(anchor, test, reason):
    with pytest.raises(NotComparable) as error:
        bd_rate(anchor, test)
    assert reason in str(error.value)


def shifted(result: dict, dataset: str, sequence: str, key: str, offset: float) -> None:
    """Add `offset` to `key` at every rate of one sequence."""
    for record in result[dataset][sequence].values():
        record[key] += offset


def test_not_comparable_sequences_are_warned_about_listed_and_left_out_of_the_averages(tmp_path, capsys):
    test = results(0.8, msssim=False)
    shifted(test, "UVG", "seq0", "ave_all_frame_psnr", 50)  # quality ranges do not overlap
    test["UVG"]["seq1"]["001"]["ave_all_frame_bpp"] = test["UVG"]["seq1"]["000"]["ave_all_frame_bpp"]
    del test["HEVC_B"]["seq1"]["003"]
    status, stdout, err = run_report(tmp_path, capsys, results(1.0), test)
    assert status == 0
    assert err.splitlines() == [
        "warning: PSNR BD-rate of SEVC against VTM on HEVC_B/seq1 is not comparable: test has 3 rates, "
        "BD-rate needs at least 4",
        "warning: PSNR BD-rate of SEVC against VTM on UVG/seq0 is not comparable: quality ranges do not overlap "
        "(anchor 21.7331 to 30.9435, test 71.7331 to 80.9435)",
        "warning: PSNR BD-rate of SEVC against VTM on UVG/seq1 is not comparable: test has the same bpp (0.0224) at "
        "two rates"]
    summary = json.loads((tmp_path / "report" / "bd_rate.json").read_text())
    assert summary["bd_rate"] == {"psnr": {"SEVC": pytest.approx({"HEVC_B": -20.0, "UVG": None, "Average": -20.0})}}
    assert [(e["dataset"], e["sequence"]) for e in summary["not_comparable"]["psnr"]["SEVC"]] == [
        ("HEVC_B", "seq1"), ("UVG", "seq0"), ("UVG", "seq1"), ("UVG", None)]
    assert summary["not_comparable"]["psnr"]["SEVC"][3]["reason"] == "no comparable sequence"
    markdown = (tmp_path / "report" / "bd_rate.md").read_text()
    assert "| SEVC | -20.0 | n/c | -20.0 |" in markdown and markdown in stdout
    assert "- SEVC, UVG/seq0: quality ranges do not overlap" in markdown and "- SEVC, UVG: no comparable" in markdown


def test_a_codec_with_nothing_comparable_is_n_c_beside_one_that_is(tmp_path, capsys):
    apart = results(0.8)
    for dataset in apart:
        for sequence in apart[dataset]:
            shifted(apart, dataset, sequence, "ave_all_frame_psnr", 50)
    status, _, err = run_report(tmp_path, capsys, results(1.0), results(0.8), apart)
    assert status == 0 and err.count("warning: PSNR BD-rate of SEVC1 against VTM") == 4
    summary = json.loads((tmp_path / "report" / "bd_rate.json").read_text())
    assert summary["bd_rate"]["psnr"]["SEVC1"] == {"HEVC_B": None, "UVG": None, "Average": None}
    assert summary["not_comparable"]["psnr"]["SEVC1"][-1] == {
        "dataset": "Average", "sequence": None, "reason": "no comparable dataset"}
    assert summary["not_comparable"]["psnr"]["SEVC"] == [] and summary["not_comparable"]["msssim"]["SEVC1"] == []
    assert "| SEVC1 | n/c | n/c | n/c |" in (tmp_path / "report" / "bd_rate.md").read_text()


def test_nothing_comparable_is_an_error_and_writes_nothing(tmp_path, capsys):
    test = results(0.8, datasets=("UVG",))
    for sequence in test["UVG"].values():
        for rate in ("002", "003"):
            del sequence[rate]
    result = run_report(tmp_path, capsys, results(1.0), test)
    assert_clear_error(result, "no sequence of any result file is comparable with the anchor")
    assert result[2].count("warning: ") == 4  # two sequences, PSNR and MS-SSIM
    assert not (tmp_path / "report").exists()


def test_ms_ssim_at_some_rates_only_is_not_comparable_and_null_everywhere_is_skipped():
    test = results(0.8)
    test["UVG"]["seq1"]["002"]["ave_all_frame_msssim"] = None
    comparison = compare(results(1.0), test, "msssim")
    assert comparison.table == pytest.approx({"HEVC_B": -20.0, "UVG": -20.0, "Average": -20.0})
    assert comparison.not_comparable == [{"dataset": "UVG", "sequence": "seq1",
                                          "reason": "test has no MS-SSIM at rate 002 but has it at others"}]
    assert compare(results(1.0), results(0.8, msssim=False), "msssim") is None


def test_a_name_given_twice_is_an_error(tmp_path, capsys):
    path = write(tmp_path / "a.json", results(1.0))
    result = cli(bdrate.main, ["--anchor", path, "--test", path, "-o", tmp_path / "report"], capsys)
    assert_clear_error(result, "the name a is given twice")


def test_dataset_names_are_safe_in_plot_file_names_tables_and_plot_titles(tmp_path, capsys):
    status, _, _ = run_report(tmp_path, capsys, results(1.0, datasets=("a/../b|$x$",)),
                              results(0.8, datasets=("a/../b|$x$",)))
    assert status == 0
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        MANIFEST, "bd_rate.json", "bd_rate.md", "rd_a_.._b__x__msssim.png", "rd_a_.._b__x__psnr.png"]
    assert "| codec | a/../b\\|$x$ | Average |" in (tmp_path / "report" / "bd_rate.md").read_text()
