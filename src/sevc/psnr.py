"""PSNR, the one definition: codec/ (the encoder's per-frame quality), eval/ (test.py's records)
and training/ (the training log) all use it."""
from __future__ import annotations

import torch


def psnr_of_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (a 0-d tensor) of frames in [0, 1] from their MSE (a 0-d tensor): the published
    formula, 20 log10(1 / sqrt(MSE))."""
    return 20 * torch.log10(1 / torch.sqrt(mse))


def psnr(recon: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """RGB PSNR in dB (a 0-d tensor where the frames are) of frames recon and source in [0, 1]."""
    return psnr_of_mse(torch.mean((recon - source) ** 2))
