"""Make the committed portable stream of test_portable.py (run once; not part of the tests).

`python tests/make_portable_stream.py` encodes the first 3 frames of the bundled clip at q 32 in
portable numerics with the stand-in weights of seed 0 into tests/data/portable/carphone.sevc, and
writes the SHA-256 of its decoded frames (float64 full and skim reconstructions) beside it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FRAMES = 3
Q = 32


def main() -> None:
    sys.path.insert(0, str(HERE))
    from conftest import stand_in_model
    from test_portable import STREAM, _decoded_hashes

    from sevc.codec.bitstream import StreamHeader
    from sevc.codec.files import encode_file
    from sevc.io.frames import read_png_folder
    from sevc.io.samples import SAMPLE_CLIP, SAMPLE_SIZE
    from sevc.models import SEVC, IntraNoAR
    from sevc.models.loading import Models
    from sevc.numerics import Numerics

    torch.set_num_threads(1)
    models = Models(stand_in_model(IntraNoAR(), "i_frame", 0), stand_in_model(SEVC(), "p_frame", 0))
    for model in models:
        model.update(force=True)
    header = StreamHeader(*SAMPLE_SIZE, Q, frame_count=FRAMES, weights_id=models.weights_id,
                          numerics=Numerics.PORTABLE)
    STREAM.parent.mkdir(parents=True, exist_ok=True)
    for _ in encode_file(models, read_png_folder(SAMPLE_CLIP, *SAMPLE_SIZE, FRAMES), header, STREAM,
                         overwrite=True):
        pass
    record = {"clip": f"{SAMPLE_CLIP.name}, first {FRAMES} frames", "q": Q, "weights": "stand-in, seed 0",
              "frames": _decoded_hashes(models, STREAM)}
    STREAM.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
