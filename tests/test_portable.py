"""The portable modes (portable and integer numerics): exact sums, correctly rounded functions,
committed streams whose decoded frames every machine must reproduce, and how closely both track
float numerics (their cross-kernel matrix: test_portable_matrix.py)."""
from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sevc.cli import decode, encode
from sevc.codec.bitstream import open_stream
from sevc.codec.video import VideoCodec
from sevc.errors import BitstreamError
from sevc.io.frames import read_png_folder
from sevc.io.samples import SAMPLE_CLIP, SAMPLE_SIZE
from sevc.models import SEVC, IntraNoAR, Rate
from sevc.numerics import Numerics, exact, functions

from conftest import CLI_CASE, DEVICE, assert_clear_error, case_frames, cli, model_args, stand_in_model
from reference import FIXTURES, case_info, path_rate

HERE = Path(__file__).resolve().parent
PORTABLE_MODES = (Numerics.PORTABLE, Numerics.INTEGER)
STREAMS = {mode: HERE / "data" / str(mode) / "carphone.sevc" for mode in PORTABLE_MODES}
# --- the building blocks --------------------------------------------------------------------

@pytest.mark.parametrize("name,reference,low,high", [
    ("exp", torch.exp, -700.0, 700.0), ("sigmoid", torch.sigmoid, -40.0, 40.0), ("tanh", torch.tanh, -20.0, 20.0),
    ("softplus", F.softplus, -60.0, 30.0), ("erf", torch.erf, -8.0, 8.0), ("gelu", F.gelu, -10.0, 10.0),
])
def test_functions_track_libm(name, reference, low, high):
    x = torch.linspace(low, high, 100001, dtype=torch.float64)
    ours, theirs = getattr(functions, name)(x), reference(x)
    error = ((ours - theirs).abs() / theirs.abs().clamp_min(1.0)).max().item()
    assert error < 1e-14, error


def test_log_tracks_libm():
    x = torch.exp(torch.linspace(-700, 700, 100001, dtype=torch.float64))
    assert ((functions.log(x) - torch.log(x)).abs() / torch.log(x).abs().clamp_min(1.0)).max() < 1e-15


def _shuffled_conv(xq, wq, stride, padding, groups):
    """The same convolution, summed in a random order (unfold, permuted terms, einsum)."""
    kh = wq.shape[-1]
    columns = F.unfold(xq, kh, padding=padding, stride=stride)
    out_h = (xq.shape[2] + 2 * padding - kh) // stride + 1
    per_in, per_out = xq.shape[1] // groups * kh * kh, wq.shape[0] // groups
    parts = []
    for g in range(groups):
        order = torch.randperm(per_in)
        block = columns[:, g * per_in:(g + 1) * per_in][:, order]
        parts.append(torch.einsum("ok,nkl->nol", wq[g * per_out:(g + 1) * per_out].reshape(per_out, -1)[:, order],
                                  block))
    return torch.cat(parts, 1).reshape(xq.shape[0], -1, out_h, columns.shape[-1] // out_h)


@pytest.mark.parametrize("cin,cout,kernel,stride,groups", [(8, 6, 3, 1, 1), (16, 32, 2, 2, 1), (32, 8, 7, 1, 1),
                                                          (96, 48, 1, 16, 1), (64, 64, 3, 1, 4)])
def test_convolutions_are_exact_whatever_the_order(cin, cout, kernel, stride, groups):
    torch.manual_seed(cin + cout)
    scales = torch.logspace(-3, 3, cin, dtype=torch.float64).view(1, -1, 1, 1)
    x = torch.randn(2, cin, 11, 13, dtype=torch.float64) * scales
    w = torch.randn(cout, cin // groups, kernel, kernel) * 0.3
    y = exact.conv2d(x, w, None, stride, kernel // 2, 1, groups)
    xq, wq = exact.to_grid(x, exact.ACTIVATION_BITS, (1, 2, 3)), exact.weight_grid(w)
    assert torch.equal(_shuffled_conv(xq, wq, stride, kernel // 2, groups), y)


def test_the_worst_case_sum_is_exact():
    """Every activation at its largest magnitude with the sign of its weight: the partial sums
    reach the bound the grids are made for, and the result is still the same in any order."""
    torch.manual_seed(1)
    w = torch.randn(1, 3456, 1, 1) * torch.logspace(-4, 0, 3456).view(1, -1, 1, 1)
    x = torch.sign(w.double()).view(1, 3456, 1, 1) * (1 - 2.0 ** -30)
    y = exact.conv2d(x, w, None, 1, 0, 1, 1)
    xq, wq = exact.to_grid(x, exact.ACTIVATION_BITS, (1, 2, 3)), exact.weight_grid(w)
    assert torch.equal(y, _shuffled_conv(xq, wq, 1, 0, 1))
    assert torch.equal(y.view(()), (xq.view(-1) * wq.view(-1)).sort().values.sum())


def test_products_softmax_and_norms_are_order_free():
    torch.manual_seed(0)
    a, b = torch.randn(3, 4, 16, 16, dtype=torch.float64), torch.randn(3, 4, 16, 256, dtype=torch.float64) * 50
    order = torch.randperm(16)
    assert torch.equal(exact.matmul(a, b), exact.matmul(a[..., order], b[..., order, :]))
    x = torch.randn(5, 256, dtype=torch.float64) * 7
    order = torch.randperm(256)
    assert torch.equal(exact.softmax(x)[:, order], exact.softmax(x[:, order]))
    weight, bias = torch.randn(256), torch.randn(256)
    assert torch.equal(exact.layer_norm(x, weight, bias, 1e-5)[:, order],
                       exact.layer_norm(x[:, order], weight[order], bias[order], 1e-5))
    assert (exact.layer_norm(x, weight, bias, 1e-5) - F.layer_norm(x, (256,), weight.double(), bias.double())).abs().max() < 1e-9


# --- streams --------------------------------------------------------------------------------

def _decoded_hashes(models, path: Path):
    stream = open_stream(path)
    codec = VideoCodec(*models, stream.header.schedule, stream.header.numerics)
    frames = list(stream.frames())
    decoded = list(codec.decode(frames, stream.header.height, stream.header.width, rate=stream.header.rate))
    return [{"full": hashlib.sha256(f.full.cpu().numpy().tobytes()).hexdigest(),
             "skim": hashlib.sha256(f.skim.cpu().numpy().tobytes()).hexdigest()} for f in decoded]


@pytest.mark.parametrize("mode", PORTABLE_MODES, ids=str)
def test_the_committed_stream_decodes_to_the_committed_hashes(mode):
    """Made once on the development machine (make_portable_stream.py); every machine that runs
    the tests must decode it to the same frames, bit for bit (under its best kernels)."""
    models = [stand_in_model(IntraNoAR(), "i_frame", 0).to(DEVICE), stand_in_model(SEVC(), "p_frame", 0).to(DEVICE)]
    for model in models:
        model.update(force=True)
    expected = json.loads(STREAMS[mode].with_suffix(".json").read_text())
    assert open_stream(STREAMS[mode]).header.numerics is mode
    assert _decoded_hashes(models, STREAMS[mode]) == expected["frames"]


def test_an_unknown_numerics_mode_is_refused(tmp_path, ckpt, capsys):
    data = bytearray(STREAMS[Numerics.PORTABLE].read_bytes())
    data[6] = 7  # the numerics byte, CRC recomputed
    data[36:40] = struct.pack(">I", zlib.crc32(bytes(data[:36])))
    (tmp_path / "s.sevc").write_bytes(bytes(data))
    with pytest.raises(BitstreamError, match="numerics mode 7, which this decoder does not know"):
        open_stream(tmp_path / "s.sevc")
    result = cli(decode.main, ["-b", tmp_path / "s.sevc", "-o", tmp_path / "out", *model_args(ckpt)], capsys)
    assert_clear_error(result, "numerics mode 7")


def test_the_published_layout_is_always_float(tmp_path, ckpt, capsys):
    args = ["-i", FIXTURES / CLI_CASE / "frames", "--width", 128, "--height", 128, "-q", 20, "-f", 1,
            "-b", tmp_path / "bin", "--format", "official", *model_args(ckpt)]
    assert_clear_error(cli(encode.main, args + ["--numerics", "portable"], capsys), "always float")


# --- how closely the portable modes track float ----------------------------------------------

def _tracking_inputs(case: str):
    """Seed, frames (an I-frame and two P-frames) and I-frame rate of a fixture case or of the
    bundled clip."""
    if case == "bundled clip":
        return 0, list(read_png_folder(SAMPLE_CLIP, *SAMPLE_SIZE, 3)), Rate.level(32)
    info = case_info(case)
    return info["seed"], case_frames(case)[:3], path_rate(info)


@pytest.mark.parametrize("case", ["case_a", "case_b", "case_c", "bundled clip"])
def test_the_portable_modes_track_float_on_the_test_path(case, figures):
    """Per frame: bits within 0.5%, reconstructions within 1/255 (the figures are printed)."""
    seed, frames, rate = _tracking_inputs(case)
    models = [stand_in_model(IntraNoAR(), "i_frame", seed), stand_in_model(SEVC(), "p_frame", seed)]
    results = {mode: list(VideoCodec(*models, numerics=mode).evaluate(frames, i_rate=rate)) for mode in Numerics}
    for mode in PORTABLE_MODES:
        pairs = list(zip(results[mode], results[Numerics.FLOAT]))
        bits = [abs(ours.bits.item() / theirs.bits.item() - 1) for ours, theirs in pairs]
        recon = [(ours.recon.double() - theirs.recon.double()).abs().max().item() for ours, theirs in pairs]
        figures(f"{mode} vs float, {case}: bits within {max(bits):.4%} per frame, "
                f"reconstructions within {max(recon) * 255:.4f} / 255")
        assert max(bits) < 0.005 and max(recon) <= 1 / 255, mode


def test_encoder_writes_integer_streams_by_default_and_the_decoder_follows(tmp_path, ckpt, capsys):
    args = ["-i", FIXTURES / CLI_CASE / "frames", "--width", 128, "--height", 128, "-q", 20, "-f", 2,
            *model_args(ckpt)]
    status, out, _ = cli(encode.main, args + ["-b", tmp_path / "p.sevc"], capsys)
    assert status == 0 and "integer numerics" in out
    assert open_stream(tmp_path / "p.sevc").header.numerics is Numerics.INTEGER
    status, out, _ = cli(decode.main, ["-b", tmp_path / "p.sevc", "-o", tmp_path / "out", *model_args(ckpt)], capsys)
    assert status == 0 and "integer numerics" in out
    assert len(list((tmp_path / "out" / "full").glob("*.png"))) == 2


def test_test_py_numerics_flag(tmp_path, ckpt, capsys):
    from sevc.cli import evaluate

    config = {"root_path": str(FIXTURES), "test_classes": {"fixtures": {"test": 1, "base_path": CLI_CASE,
              "src_type": "png", "sequences": {"frames": {"width": 128, "height": 128, "frames": 2, "gop": -1}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    base = ["--test_config", tmp_path / "c.json", "--rate_num", 1, "--i_frame_q_indexes", 30, *model_args(ckpt)]
    records = {}
    for mode in ("float", "portable", "integer"):
        status, _, err = cli(evaluate.main, base + ["--output_path", tmp_path / f"{mode}.json", "--numerics", mode],
                             capsys)
        assert status == 0, err
        records[mode] = json.loads((tmp_path / f"{mode}.json").read_text())["fixtures"]["frames"]["000"]
    for mode in ("portable", "integer"):
        for ours, theirs in zip(records[mode]["frame_bpp"], records["float"]["frame_bpp"]):
            assert abs(ours / theirs - 1) < 0.005
    result = cli(evaluate.main, base + ["--output_path", tmp_path / "x.json", "--numerics", "integer",
                                        "--precision", "bf16"], capsys)
    assert_clear_error(result, "has its own arithmetic")
