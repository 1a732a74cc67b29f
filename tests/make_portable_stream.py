"""Make a committed stream of test_portable.py (run once per mode; not part of the tests).

`python tests/make_portable_stream.py MODE` (portable or integer) encodes the first 3 frames of the
bundled clip at q 32 in that numerics mode with the stand-in weights of seed 0 into
tests/data/MODE/carphone.sevc, and writes the SHA-256 of its decoded frames (full and skim
reconstructions, in the mode's dtype) beside it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FRAMES = 3
Q = 32


def main(mode_name: str) -> None:
    sys.path.insert(0, str(HERE))
    from conftest import stand_in_model
    from test_portable import STREAMS, _decoded_hashes

    from sevc.codec.bitstream import StreamHeader
    from sevc.codec.files import encode_file
    from sevc.io.frames import read_png_folder
    from sevc.io.samples import SAMPLE_CLIP, SAMPLE_SIZE
    from sevc.models import SEVC, IntraNoAR
    from sevc.weights.models import Models
    from sevc.numerics import Numerics

    mode = Numerics.named(mode_name)
    torch.set_num_threads(1)
    models = Models(stand_in_model(IntraNoAR(), "i_frame", 0), stand_in_model(SEVC(), "p_frame", 0))
    for model in models:
        model.update(force=True)
    header = StreamHeader(*SAMPLE_SIZE, Q, frame_count=FRAMES, weights_id=models.weights_id, numerics=mode)
    stream = STREAMS[mode]
    stream.parent.mkdir(parents=True, exist_ok=True)
    for _ in encode_file(models, read_png_folder(SAMPLE_CLIP, *SAMPLE_SIZE, FRAMES), header, stream, overwrite=True):
        pass
    record = {"clip": f"{SAMPLE_CLIP.name}, first {FRAMES} frames", "q": Q, "weights": "stand-in, seed 0",
              "frames": _decoded_hashes(models, stream)}
    stream.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
