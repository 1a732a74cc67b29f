"""sevc: the Spatially Embedded Video Codec (SEVC, CVPR 2025) in PyTorch.

Layers of the package: `numerics` (float and portable arithmetic), `nn` (building blocks),
`entropy` (entropy coding), `models` (the paper's networks), `codec` (whole videos, bitstreams,
files), `io` (frames and outputs), `eval` (metrics, test.py, BD-rate), `training`, and `cli`
(the command-line tools).
"""
from .codec.schedule import FrameSchedule
from .codec.video import VideoCodec
from .models import SEVC, IntraNoAR, Rate, load_checkpoint, load_models
from .numerics import Numerics

__version__ = "0.1.0"
__all__ = ["FrameSchedule", "IntraNoAR", "Numerics", "Rate", "SEVC", "VideoCodec", "load_checkpoint", "load_models"]
