"""Building the two SEVC models (I-frame and P-frame) from checkpoints, or stand-in weights."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from ..errors import CheckpointError
from .checkpoint import load_checkpoint, read_state_dict, weights_id
from ..models.intra import IntraNoAR
from ..models.sevc import SEVC

DEFAULT_CKPT_DIR = Path("ckpt")
I_FRAME_CKPT = "cvpr2023_i_frame.pth.tar"
P_FRAME_CKPT = "cvpr2025_p_frame.pth.tar"


class Models(NamedTuple):
    """The models a video is coded with: the I-frame codec and the SEVC P-frame model."""

    i_frame: IntraNoAR
    p_frame: SEVC

    @property
    def device(self) -> torch.device:
        return self.i_frame.device

    @property
    def weights_id(self) -> bytes:
        """The 8 bytes sevc streams record (see `sevc.weights.checkpoint.weights_id`)."""
        return weights_id(self.i_frame, self.p_frame)


def default_checkpoint(name: str, ckpt_dir: Optional[Path] = None) -> Path:
    return (ckpt_dir or DEFAULT_CKPT_DIR) / name


def anchor_count(i_frame_path: Optional[str | os.PathLike] = None) -> int:
    """How many q anchors (rates) the I-frame checkpoint holds."""
    path = i_frame_path or default_checkpoint(I_FRAME_CKPT)
    _check_exists(path)
    state = read_state_dict(path)
    if "q_scale_enc" not in state:
        raise CheckpointError(f"{path} is not an I-frame checkpoint (no q_scale_enc)")
    return state["q_scale_enc"].shape[0]


def _check_exists(path) -> None:
    if not os.path.lexists(path):
        raise CheckpointError(f"checkpoint not found: {path} (see ckpt/README.md for the official weights)")


def load_models(i_frame_path: Optional[str | os.PathLike] = None, p_frame_path: Optional[str | os.PathLike] = None,
                device: str | torch.device = "cpu", ec_thread: bool = False, stream_part_i: int = 1,
                stream_part_p: int = 1) -> Models:
    """The I-frame and P-frame models in eval mode on `device`, entropy coders built.

    Paths default to `ckpt/cvpr2023_i_frame.pth.tar` and `ckpt/cvpr2025_p_frame.pth.tar`.
    """
    paths = (i_frame_path or default_checkpoint(I_FRAME_CKPT), p_frame_path or default_checkpoint(P_FRAME_CKPT))
    for path in paths:
        _check_exists(path)
    i_frame = load_checkpoint(IntraNoAR(ec_thread=ec_thread, stream_part=stream_part_i), paths[0])
    p_frame = load_checkpoint(SEVC(ec_thread=ec_thread, stream_part=stream_part_p), paths[1])
    for model, path in zip((i_frame, p_frame), paths):
        _check_q_scales(model, path)
    return Models(ready(i_frame, device), ready(p_frame, device))


def _check_q_scales(model: torch.nn.Module, path) -> None:
    """CheckpointError unless every q scale (the rates' quantization steps) is positive and finite."""
    for name, value in model.state_dict().items():
        if "q_scale" in name and not bool((torch.isfinite(value) & (value > 0)).all()):
            raise CheckpointError(f"{path}: {name} must be positive and finite (the quantization scales of the "
                                  f"rates), got {value.flatten()[:4].tolist()}")


def compile_transforms(models: Models, **options) -> Models:
    """torch.compile (in place, `nn.Module.compile(**options)`) the pure-tensor submodules of both
    models (their `TRANSFORMS`: analysis and synthesis transforms, context and reconstruction
    networks). The state_dicts are unchanged; results match the uncompiled models within float
    rounding, so this is for speed on the test path, not for encoding and decoding."""
    for model in models:
        for name in model.TRANSFORMS:
            model.get_submodule(name).compile(**options)
    return models


def ready(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """`model` on `device` in eval mode, its entropy coders built."""
    model = model.to(device).eval()
    model.update(force=True)
    return model
