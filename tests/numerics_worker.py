"""Encode and decode clips in one process, under whatever kernel configuration its environment
sets (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, SEVC_INTEGER_KERNEL, thread counts), and report
hashes of everything.

`python numerics_worker.py THREADS REPORT [FLOAT_STREAMS ...]` codes every clip of `CLIPS` with the
stand-in weights (seed 0) in its numerics modes and writes REPORT (JSON): per clip and
mode, the SHA-256 of the payloads, of the encoder's reconstructions and of the decoded full and
skim frames, and whether the decoder reproduced the encoder exactly. With FLOAT_STREAMS (reports'
folders of float payloads written by other configurations), it also decodes those and reports,
per folder, whether that succeeded: the float mode's portability, for the record.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, List

import torch

HERE = Path(__file__).resolve().parent
CLIPS = {  # name: (folder, frames, crop width, crop height, numerics modes)
    "carphone": (HERE.parents[0] / "src" / "sevc" / "data" / "carphone_176x144", 2, 176, 144, ("float", "integer")),
    "odd_size": (HERE / "data" / "clips" / "bikes_256x128", 2, 88, 72, ("float", "portable", "integer")),
}
RATE_LEVEL = 32


def _frames(folder: Path, count: int, width: int, height: int) -> List[torch.Tensor]:
    """The top-left width x height of the first `count` frames of a PNG folder."""
    from sevc.io.frames import read_png

    return [read_png(folder / f"im{k + 1:05d}.png")[..., :height, :width].contiguous() for k in range(count)]


def _hash(tensors) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _code(codec, frames, height: int, width: int) -> Dict[str, object]:
    from sevc.models import Rate

    rate = Rate.level(RATE_LEVEL)
    encoded = list(codec.encode(frames, rate=rate))
    payloads = [frame.payloads for frame in encoded]
    full = list(codec.decode(payloads, height, width, rate=rate))
    skim = list(codec.decode(payloads, height, width, rate=rate, skim=True))
    return {
        "payloads": hashlib.sha256(b"".join(b"".join(p) for p in payloads)).hexdigest(),
        "encoder_full": _hash(f.full for f in encoded), "encoder_skim": _hash(f.skim for f in encoded),
        "decoded_full": _hash(f.full for f in full), "decoded_skim": _hash(f.skim for f in skim),
        "decoder_equals_encoder": all(torch.equal(a.full, b.full) and torch.equal(a.skim, c.skim)
                                      for a, b, c in zip(encoded, full, skim)),
        "_payloads": payloads, "_encoded": encoded,
    }


def main(threads: int, report: Path, float_streams: List[Path]) -> None:
    sys.path.insert(0, str(HERE))
    from reference import stand_in_checkpoint
    from sevc.codec.video import VideoCodec
    from sevc.models import SEVC, IntraNoAR
    from sevc.weights.checkpoint import load_weights
    from sevc.numerics import Numerics

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    models = []
    for model, which in ((IntraNoAR(), "i_frame"), (SEVC(), "p_frame")):
        load_weights(model, stand_in_checkpoint(which, 0, model))
        models.append(model.eval())
        model.update(force=True)
    results: Dict[str, Dict] = {}
    streams = report.with_suffix(".float")
    streams.mkdir(exist_ok=True)
    for name, (folder, count, width, height, modes) in CLIPS.items():
        frames = _frames(folder, count, width, height)
        for mode in map(Numerics.named, modes):
            coded = _code(VideoCodec(*models, numerics=mode), frames, height, width)
            if mode is Numerics.FLOAT:
                torch.save({"payloads": coded["_payloads"], "full": [f.full for f in coded["_encoded"]]},
                           streams / f"{name}.pt")
                coded["other_machine_float_streams"] = {
                    other.stem: _decode_other(models, other / f"{name}.pt", height, width) for other in float_streams}
            results[f"{name}/{mode}"] = {k: v for k, v in coded.items() if not k.startswith("_")}
    report.write_text(json.dumps({"threads": threads, "results": results}, indent=1))


def _decode_other(models, path: Path, height: int, width: int) -> str:
    """'exact', 'different' or 'error: ...': float payloads of another configuration decoded here."""
    from sevc.codec.video import VideoCodec
    from sevc.errors import SevcError
    from sevc.models import Rate

    other = torch.load(path, weights_only=True)
    try:
        decoded = list(VideoCodec(*models).decode(other["payloads"], height, width, rate=Rate.level(RATE_LEVEL)))
    except SevcError as exc:
        return f"error: {exc}"
    return "exact" if all(torch.equal(a.full, b) for a, b in zip(decoded, other["full"])) else "different"


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]), [Path(folder) for folder in sys.argv[3:]])
