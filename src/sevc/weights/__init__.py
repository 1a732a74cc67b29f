"""Model weights: checkpoint files (`checkpoint.py`: read with bounds and `weights_only`, checked,
loaded by checkpoint name, identified in streams), the two models a tool codes with
(`models.py`: the official checkpoints or given files, `Models`), and stand-in weights for running
everything without them (`stand_in.py`)."""
from .checkpoint import load_checkpoint, named_parameters, read_state_dict, weights_id
from .models import Models, load_models
from .stand_in import stand_in_models

__all__ = ["Models", "load_checkpoint", "load_models", "named_parameters", "read_state_dict", "stand_in_models",
           "weights_id"]
