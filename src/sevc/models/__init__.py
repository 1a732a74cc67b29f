"""The paper's networks: the I-frame codec, SEVC's base layer, MFCA, the spatial-guided latent
prior and the enhancement layer, and the SEVC P-frame model that joins them; with what they share:
rates (`rate.py`), decoded picture buffers (`buffers.py`) and the codecs' base (`codec_base.py`).
Attribute names follow the official checkpoints (their state_dict keys are a file format); their
weights are read, checked and built in `sevc.weights`."""
from .buffers import BaseBuffer, Buffers, EnhancementBuffer
from .codec_base import Compressed, Estimated
from .intra import IntraNoAR
from .rate import FINE_LEVELS, Rate
from .sevc import SEVC

__all__ = ["BaseBuffer", "Buffers", "Compressed", "EnhancementBuffer", "Estimated", "FINE_LEVELS", "IntraNoAR",
           "Rate", "SEVC"]
