"""sevc: the Spatially Embedded Video Codec (SEVC, CVPR 2025) in PyTorch.

Layers of the package: `numerics` (float, portable and integer arithmetic), `nn` (building
blocks), `entropy` (entropy models and the rANS coder), `latent_codecs` (each latent's
quantization, entropy model and coding), `models` (the paper's networks), `weights` (checkpoints,
the models a tool codes with, stand-in weights), `codec` (whole videos, bitstreams, files), `io`
(frames and outputs), `psnr`, `runtime` (threads, the deterministic set-up), `eval` (metrics,
test.py, BD-rate), `training`, and `cli` (the command-line tools).

The names below are imported when first used, so that `import sevc.cli.launch` (what the tools
start with) does not load PyTorch before the tools handle Ctrl-C.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
_EXPORTS = {"FrameSchedule": "codec.schedule", "VideoCodec": "codec.video", "StreamHeader": "codec.bitstream",
            "open_stream": "codec.bitstream", "encode_file": "codec.files", "decode_to_folder": "codec.files",
            "read_png_folder": "io.frames", "SEVC": "models", "IntraNoAR": "models", "Rate": "models",
            "load_checkpoint": "weights", "load_models": "weights", "stand_in_models": "weights", "Numerics": "numerics"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sevc' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted(list(globals()) + __all__)
