"""MS-SSIM and the per-sequence result record of test.py (the published JSON keys); PSNR is
sevc.psnr."""
from __future__ import annotations

import math
import warnings
from typing import Dict, List, Optional, Sequence

import torch
from pytorch_msssim import ms_ssim

MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-tap window: (11 - 1) * 2**4 + 1
RECORD_KEYS = frozenset(["frame_pixel_num", "i_frame_num", "p_frame_num", "frame_bpp", "frame_psnr", "frame_msssim",
                         "frame_type", "test_time"] + [f"ave_{group}_frame_{metric}" for group in ("i", "p", "all")
                                                       for metric in ("bpp", "psnr", "msssim")])


_warned_small = False


def msssim(recon: torch.Tensor, source: torch.Tensor) -> Optional[torch.Tensor]:
    """MS-SSIM (a 0-d tensor) of frames [1, 3, H, W] in [0, 1]; None (with one warning per process)
    for frames too small for its 5 scales (a side below 161 pixels)."""
    global _warned_small
    if min(source.shape[2:]) < MS_SSIM_MIN_SIDE:
        if not _warned_small:
            warnings.warn(f"MS-SSIM needs frames of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE}; "
                          f"it is reported as null for {source.shape[3]}x{source.shape[2]}", stacklevel=2)
            _warned_small = True
        return None
    return ms_ssim(recon, source, data_range=1)


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    if not values or any(v is None for v in values):
        return None if values else 0
    return math.fsum(values) / len(values)


def sequence_record(frame_types: List[int], bits: List[float], psnrs: List[float],
                    msssims: List[Optional[float]], frame_pixels: int) -> Dict[str, object]:
    """test.py's record of one sequence at one rate: the published averages (I, P and all frames)
    and the per-frame arrays (frame_type 0 = I, 1 = P; bpp; PSNR; MS-SSIM or None); test.py adds
    `test_time` (RECORD_KEYS are all of them)."""
    record: Dict[str, object] = {"frame_pixel_num": frame_pixels}
    groups = {"i": [k for k, t in enumerate(frame_types) if t == 0],
              "p": [k for k, t in enumerate(frame_types) if t != 0],
              "all": list(range(len(frame_types)))}
    record["i_frame_num"] = len(groups["i"])
    record["p_frame_num"] = len(groups["p"])
    for name, members in groups.items():
        record[f"ave_{name}_frame_bpp"] = (math.fsum(bits[k] for k in members) / (len(members) * frame_pixels)
                                           if members else 0)
        record[f"ave_{name}_frame_psnr"] = _mean([psnrs[k] for k in members])
        record[f"ave_{name}_frame_msssim"] = _mean([msssims[k] for k in members])
    record["frame_bpp"] = [b / frame_pixels for b in bits]
    record["frame_psnr"] = list(psnrs)
    record["frame_msssim"] = list(msssims)
    record["frame_type"] = list(frame_types)
    return record
