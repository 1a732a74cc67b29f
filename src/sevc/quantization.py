"""Quantization step selection: the checkpoint's q anchors or 64 log-interpolated levels."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

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


def rate_q_indexes(rate_num: int, anchor_num: int, i_q_indexes: Optional[Sequence[int]] = None,
                   p_q_indexes: Optional[Sequence[int]] = None) -> Tuple[bool, List[int], List[int]]:
    """The rates test.py evaluates: (q_in_ckpt, I-frame q indexes, P-frame q indexes).

    Explicit I-frame indexes are fine levels (0..63); otherwise 4 rates with a checkpoint of 4
    anchors use the anchors, and any other `rate_num` (2..64) fine levels spread evenly over
    0..63. P-frames use the I-frame indexes unless given their own (fine levels).
    """
    def checked(indexes: Sequence[int], flag: str) -> List[int]:
        if len(indexes) != rate_num:
            raise ValueError(f"{flag} has {len(indexes)} values, --rate_num is {rate_num}")
        bad = [q for q in indexes if not 0 <= q < FINE_LEVELS]
        if bad:
            raise ValueError(f"{flag}: q index {bad[0]} is out of range 0..{FINE_LEVELS - 1}")
        return [int(q) for q in indexes]

    if i_q_indexes is not None:
        q_in_ckpt, i_list = False, checked(i_q_indexes, "--i_frame_q_indexes")
    elif rate_num == anchor_num == 4:
        q_in_ckpt, i_list = True, [0, 1, 2, 3]
    elif 2 <= rate_num <= FINE_LEVELS:
        q_in_ckpt, i_list = False, [int(q + 0.5) for q in np.linspace(0, FINE_LEVELS - 1, num=rate_num)]
    else:
        raise ValueError(f"--rate_num must be in 2..{FINE_LEVELS}, got {rate_num}")
    if p_q_indexes is None:
        return q_in_ckpt, i_list, list(i_list)
    if q_in_ckpt:
        raise ValueError("--p_frame_q_indexes are fine levels (0..63): give --i_frame_q_indexes too")
    return q_in_ckpt, i_list, checked(p_q_indexes, "--p_frame_q_indexes")


def quantize(x: torch.Tensor, training: bool = False) -> torch.Tensor:
    """Rounding of a latent for the decoder: plain at inference, straight-through in training
    (forward rounds, backward passes the gradient unchanged)."""
    if not training:
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


def rate_proxy(x: torch.Tensor, x_q: torch.Tensor, training: bool = False,
               mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """What the rate is estimated on: the rounded latent x_q at inference; in training x plus
    uniform noise in [-0.5, 0.5) (only where `mask` is 1), the differentiable proxy of rounding."""
    if not training:
        return x_q
    noise = torch.empty_like(x).uniform_(-0.5, 0.5)
    return x + (noise if mask is None else noise * mask)
