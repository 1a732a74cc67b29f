"""Mixed precision, torch.compile and the deterministic set-up: the test path runs in fp16 and bf16,
mixed-precision streams decode to the encoder's frames and record their precision, training runs
with AMP, the transforms compile without changing the checkpoint layout."""
from __future__ import annotations

import json
import struct
import zlib

import pytest
import torch

from sevc.cli import decode, encode, evaluate
from sevc.runtime import deterministic
from sevc.codec.bitstream import open_stream
from sevc.codec.video import VideoCodec
from sevc.errors import BitstreamError
from sevc.models import Rate
from sevc.weights.models import compile_transforms
from sevc.models.rate import fine_levels
from sevc.numerics import Numerics, Precision

from conftest import CLI_CASE, CLIPS, REPO, assert_clear_error, cli, model_args, fresh_models
from reference import FIXTURES

PORTABLE_STREAM = REPO / "tests" / "data" / "portable" / "carphone.sevc"


def test_deterministic_setup_turns_tf32_off():
    deterministic()
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_fine_levels_are_computed_once_per_anchors():
    anchors = torch.nn.Parameter(torch.tensor([0.6, 0.9, 1.3, 1.9]).view(4, 1, 1, 1))
    levels = fine_levels(anchors)
    assert fine_levels(anchors) is levels
    with torch.no_grad():
        anchors.mul_(2)  # new values: computed again
    assert torch.allclose(fine_levels(anchors), 2 * levels)


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    frame = torch.rand(1, 3, 64, 64)
    return [frame, frame.roll(3, dims=3)]


@pytest.fixture(scope="module")
def float32_results(clip):
    return list(VideoCodec(*fresh_models()).evaluate(clip, i_rate=Rate.of_anchor(1)))


@pytest.mark.parametrize("dtype,how", [(torch.float16, "autocast"), (torch.bfloat16, "model")])
def test_test_path_in_half_precision(clip, float32_results, dtype, how):
    models = fresh_models()
    if how == "autocast":
        results = list(VideoCodec(*models, precision=Precision.FP16).evaluate(clip, i_rate=Rate.of_anchor(1)))
    else:
        half = [model.to(dtype) for model in models]
        results = list(VideoCodec(*half).evaluate([x.to(dtype) for x in clip], i_rate=Rate.of_anchor(1)))
    for result, expected in zip(results, float32_results):
        assert torch.isfinite(result.bits) and abs(result.bits.item() / expected.bits.item() - 1) < 0.1
        assert (result.recon.float() - expected.recon).abs().max() < 0.05


def _crop_frame(folder):
    """A one-frame 64x64 PNG sequence in `folder` (half precision is slow on CPUs: small frames)."""
    from PIL import Image

    folder.mkdir()
    Image.open(FIXTURES / CLI_CASE / "frames" / "im00001.png").crop((0, 0, 64, 64)).save(folder / "im00001.png")
    return folder


def test_test_py_precision_flag(ckpt, tmp_path, capsys):
    _crop_frame(tmp_path / "seq")
    config = {"root_path": str(tmp_path), "test_classes": {"crops": {"test": 1, "base_path": ".", "src_type": "png",
              "sequences": {"seq": {"width": 64, "height": 64, "frames": 1, "gop": -1}}}}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    status, _, err = cli(evaluate.main, ["--test_config", tmp_path / "c.json", "--output_path", tmp_path / "r.json",
                                         "--rate_num", 1, "--i_frame_q_indexes", 40, "--precision", "bf16",
                                         *model_args(ckpt)], capsys)
    assert status == 0, err
    record = json.loads((tmp_path / "r.json").read_text())["crops"]["seq"]["000"]
    assert record["ave_all_frame_bpp"] > 0 and record["ave_all_frame_psnr"] > 0


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_with_amp(tmp_path, amp):
    from sevc.training.trainer import load_config, train

    settings = {"data": {"type": "folders", "root": str(CLIPS)}, "crop": [64, 64], "batch_size": 1, "steps": 1,
                "num_workers": 0, "sequence_length": 2, "log_every": 1, "amp": amp,
                "init": {"i_frame": None, "p_frame": None}}
    last = train(load_config(REPO / "train_configs" / "base.json", settings), tmp_path)
    assert last["step"] == 1 and torch.isfinite(torch.tensor(last["loss"]))


def test_compiled_transforms_keep_the_layout_and_the_numbers(clip):
    models = fresh_models()
    keys = [list(model.state_dict()) for model in models]
    expected = list(VideoCodec(*models).evaluate(clip, i_rate=Rate.of_anchor(2)))
    compile_transforms(models, backend="eager")
    assert [list(model.state_dict()) for model in models] == keys
    results = list(VideoCodec(*models).evaluate(clip, i_rate=Rate.of_anchor(2)))
    for result, reference in zip(results, expected):
        assert abs(result.bits.item() / reference.bits.item() - 1) < 1e-4
        assert (result.recon - reference.recon).abs().max() < 1e-4


@pytest.mark.slow
def test_a_transform_compiles_with_inductor():
    models = fresh_models()
    fusion = models.p_frame.BL_codec.context_fusion_net
    inputs = (torch.rand(1, 48, 16, 16), torch.rand(1, 64, 8, 8), torch.rand(1, 96, 4, 4))
    with torch.no_grad():
        expected = fusion(*inputs)
        fusion.compile()
        results = fusion(*inputs)
    assert all((a - b).abs().max() < 1e-4 for a, b in zip(results, expected))


def test_mixed_precision_encoding_decodes_to_the_encoders_frames(clip):
    codec = VideoCodec(*fresh_models(), precision=Precision.BF16)
    encoded = list(codec.encode(clip, rate=Rate.level(30)))
    decoded = list(codec.decode([frame.payloads for frame in encoded], 64, 64, rate=Rate.level(30)))
    for ours, theirs in zip(decoded, encoded):
        assert ours.full.dtype == torch.float32 and torch.equal(ours.full, theirs.full)
        assert torch.equal(ours.skim, theirs.skim)


def test_the_stream_records_its_precision_and_the_decoder_follows(ckpt, tmp_path, capsys):
    frames = ["-i", _crop_frame(tmp_path / "seq"), "--width", 64, "--height", 64]
    status, out, err = cli(encode.main, [*frames, "-q", 20, "-b", tmp_path / "s.sevc", "--precision", "bf16",
                                         *model_args(ckpt)], capsys)
    assert status == 0, err
    assert "float numerics, bf16" in out
    header = open_stream(tmp_path / "s.sevc").header
    assert (header.numerics, header.precision) == (Numerics.FLOAT, Precision.BF16)
    encoded_psnr = out.split(" bpp, ")[1].split(" dB")[0]
    status, out, err = cli(decode.main, [*frames[:2], "-b", tmp_path / "s.sevc", "-o", tmp_path / "out",
                                         *model_args(ckpt)], capsys)
    assert status == 0, err
    assert "float numerics, bf16" in out and f"{encoded_psnr} dB PSNR" in out


def test_precisions_the_stream_cannot_carry_are_refused(ckpt, tmp_path, capsys):
    args = ["-i", FIXTURES / CLI_CASE / "frames", "--width", 128, "--height", 128, "-q", 20, "-f", 1,
            *model_args(ckpt)]
    assert_clear_error(cli(encode.main, [*args, "-b", tmp_path / "o", "--format", "official", "--precision", "fp16"],
                           capsys), "always float, fp32")
    assert_clear_error(cli(encode.main, [*args, "-b", tmp_path / "s.sevc", "--numerics", "portable",
                                         "--precision", "bf16"], capsys), "has its own arithmetic")
    stream = bytearray(PORTABLE_STREAM.read_bytes())
    for flags, message in ((0b110, "precision 3"), (0b010, "portable stream with a float precision"),
                           (0b1000, "unknown stream flags")):
        stream[5] = flags  # the flags byte, CRC recomputed
        stream[36:40] = struct.pack(">I", zlib.crc32(bytes(stream[:36])))
        (tmp_path / "x.sevc").write_bytes(bytes(stream))
        with pytest.raises(BitstreamError, match=message):
            open_stream(tmp_path / "x.sevc")
