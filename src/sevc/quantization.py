"""Quantization step selection: the checkpoint's q anchors or 64 log-interpolated levels."""
from __future__ import annotations

import numpy as np
import torch

FINE_LEVELS = 64


def fine_q_scales(anchors: torch.Tensor) -> torch.Tensor:
    """64 levels log-interpolated between the first and last anchor, float32.

    Computed in numpy float32 arithmetic, as the published models do, so that the fine
    levels (and with them every coded symbol) are bit-identical.
    """
    values = anchors.detach().reshape(-1).cpu().numpy().astype(np.float32)
    levels = np.exp(np.linspace(np.log(values[0]), np.log(values[-1]), FINE_LEVELS))
    return torch.from_numpy(np.asarray(levels, dtype=np.float32)).to(anchors.device)


def q_scale(anchors: torch.Tensor, q_in_ckpt: bool, q_index: int) -> torch.Tensor:
    """The scale for `q_index`: an anchor index (q_in_ckpt) or a fine level in 0..63."""
    count = anchors.shape[0] if q_in_ckpt else FINE_LEVELS
    if not 0 <= int(q_index) < count:
        kind = "checkpoint q index" if q_in_ckpt else "q index"
        raise ValueError(f"{kind} {q_index} is out of range 0..{count - 1}")
    if q_in_ckpt:
        return anchors.reshape(-1)[int(q_index)]
    return fine_q_scales(anchors)[int(q_index)]
