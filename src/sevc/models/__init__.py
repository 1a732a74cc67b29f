"""The paper's networks: the I-frame codec, SEVC's base layer, MFCA, the spatial-guided latent
prior and the enhancement layer, and the SEVC P-frame model that joins them. Attribute names
follow the official checkpoints (their state_dict keys are a file format)."""
from .buffers import BaseBuffer, Buffers, EnhancementBuffer
from .checkpoint import load_checkpoint, read_state_dict, weights_id
from .codec_base import Compressed, Estimated
from .intra import IntraNoAR
from .loading import Models, load_models
from .stand_in import stand_in_models
from .rate import FINE_LEVELS, Rate
from .sevc import SEVC

__all__ = ["BaseBuffer", "Buffers", "Compressed", "EnhancementBuffer", "Estimated", "FINE_LEVELS", "IntraNoAR",
           "Models", "Rate", "SEVC", "load_checkpoint", "load_models", "read_state_dict", "stand_in_models",
           "weights_id"]
