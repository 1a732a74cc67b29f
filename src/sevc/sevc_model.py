"""The SEVC P-frame model: base layer + MFCA + spatial-guided latent prior + enhancement layer.

Its state_dict is the official `cvpr2025_p_frame.pth.tar`. Frames are coded in two layers:
the base layer codes the frame downsampled by `ratio` (4), the enhancement layer codes the
full frame with contexts and a latent prior augmented by the base layer's references.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .base_layer import BaseLayerCodec
from .enhancement_layer import EnhancementLayerCodec
from .latent_prior import LatentInterLayerPrediction
from .mfca import InterLayerPrediction
from .padding import crop, pad_to_multiple
from .resize import imresize
from .temporal_context import CH_1X, adapt_reference

FRAME_PAD = 16


def enhancement_size(height: int, width: int) -> Tuple[int, int]:
    """Size the enhancement layer codes: the frame padded to multiples of 16."""
    return -(-height // FRAME_PAD) * FRAME_PAD, -(-width // FRAME_PAD) * FRAME_PAD


def base_size(height: int, width: int, fast: bool = False, ratio: int = 4) -> Tuple[int, int]:
    """Size the base layer codes (multiples of 16) for a frame of height x width.

    Full mode downsamples the 16-padded frame, fast mode the frame itself (as published).
    """
    h, w = (height, width) if fast else enhancement_size(height, width)
    return enhancement_size(-(-h // ratio), -(-w // ratio))


def base_input(x: torch.Tensor, ratio: int = 4) -> torch.Tensor:
    """Base-layer input: x [B, 3, h, w] bicubic-downsampled by `ratio`, zero-padded to multiples of 16."""
    return pad_to_multiple(imresize(x, 1.0 / ratio), FRAME_PAD, mode="constant")


def intra_base_dpb(x_hat: torch.Tensor, ratio: int = 4) -> Dict:
    """Base-layer dpb after an I-frame reconstruction x_hat [1, 3, H16, W16]."""
    return {"ref_frame": base_input(x_hat, ratio), "ref_feature": None, "ref_mv_feature": None,
            "ref_y": None, "ref_mv_y": None}


def intra_enhancement_dpb(x_hat: torch.Tensor) -> Dict:
    """Enhancement-layer dpb after an I-frame reconstruction x_hat [1, 3, H16, W16]."""
    return {"ref_frame": x_hat, "ref_feature": None, "ref_ys": [None, None, None]}


class SEVC(nn.Module):
    """Two-layer P-frame codec. Frames x [1, 3, H, W] in [0, 1], any H, W >= 64.

    q: `q_in_ckpt` picks one of the checkpoint's anchors by `q_index`, else `q_index` in 0..63.
    `frame_index` (the frame's position since the last I-frame) selects the hierarchical
    feature adaptor through frame_index % 4.
    """

    def __init__(self, anchor_num: int = 4, ratio: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__()
        if ratio != int(ratio) or ratio < 1:
            raise ValueError(f"the base-layer ratio must be a positive integer, got {ratio}")
        self.ratio = int(ratio)
        self.BL_codec = BaseLayerCodec(anchor_num, ec_thread, stream_part)
        self.ILP = InterLayerPrediction(iter_num=2)
        self.latent_ILP = LatentInterLayerPrediction()
        self.EL_codec = EnhancementLayerCodec(anchor_num, ec_thread, stream_part)
        self.feature_adaptor_I = nn.Conv2d(3, CH_1X, 3, stride=1, padding=1)
        self.feature_adaptor = nn.ModuleList([nn.Conv2d(CH_1X, CH_1X, 1) for _ in range(3)])

    def update(self, force: bool = False) -> None:
        """Build both layers' entropy coders (needed before compress / decompress)."""
        self.BL_codec.update(force)
        self.EL_codec.update(force)

    def _enhancement_inputs(self, base_dpb: Dict, dpb: Dict, frame_index: int):
        """MFCA contexts and the spatial-guided latent prior for the enhancement layer."""
        height, width = dpb["ref_frame"].shape[2:]
        small_h, small_w = height // self.ratio, width // self.ratio
        base_feature = crop(base_dpb["ref_feature"], small_h, small_w)
        base_mv = crop(base_dpb["ref_mv"], small_h, small_w)
        ref_feature = adapt_reference(self.feature_adaptor_I, self.feature_adaptor, dpb, frame_index)
        contexts = self.ILP(base_feature, base_mv, ref_feature, dpb["ref_frame"])
        latent_prior = self.latent_ILP(base_dpb["ref_y"], dpb["ref_ys"], height // 16, width // 16)
        return contexts, latent_prior

    def enhance(self, x_el: torch.Tensor, base_dpb: Dict, dpb: Dict, q_in_ckpt: bool = False, q_index: int = 0,
                frame_index: int = 0):
        """The enhancement layer with estimated bits (test path, and training in train mode), after
        the base layer has coded the frame into `base_dpb`.

        x_el [B, 3, H, W] in [0, 1], H and W multiples of 16. Returns (new enhancement dpb, bits of
        the batch as a 0-d tensor); the reconstruction (new dpb's ref_frame) is not clamped.
        """
        contexts, latent_prior = self._enhancement_inputs(base_dpb, dpb, frame_index)
        return self.EL_codec(x_el, contexts, latent_prior, dpb["ref_ys"], q_in_ckpt, q_index)

    def forward(self, x: torch.Tensor, base_dpb: Dict, dpb: Dict, q_in_ckpt: bool = False, q_index: int = 0,
                frame_index: int = 0):
        """Test path: (new base dpb, new enhancement dpb, estimated bits of both layers, a float).

        The enhancement reconstruction (new dpb's ref_frame, padded size) is not clamped.
        """
        x_el = pad_to_multiple(x, FRAME_PAD, mode="replicate")
        base_dpb, base_bits = self.BL_codec(base_input(x_el, self.ratio), base_dpb, q_in_ckpt, q_index, frame_index)
        dpb, bits = self.enhance(x_el, base_dpb, dpb, q_in_ckpt, q_index, frame_index)
        return base_dpb, dpb, base_bits.item() + bits.item()

    def compress(self, x: torch.Tensor, base_dpb: Dict, dpb: Optional[Dict], q_index: int, frame_index: int,
                 q_in_ckpt: bool = False):
        """Encode x [1, 3, H, W]: (new base dpb, new enhancement dpb, [base payload, enhancement payload]).

        With dpb None (fast mode) only the base layer is coded, from the frame downsampled as is.
        """
        x_el = pad_to_multiple(x, FRAME_PAD, mode="replicate")
        base_dpb, base_stream = self.BL_codec.compress(base_input(x if dpb is None else x_el, self.ratio), base_dpb,
                                                       q_in_ckpt, q_index, frame_index)
        if dpb is None:
            return base_dpb, None, [base_stream]
        contexts, latent_prior = self._enhancement_inputs(base_dpb, dpb, frame_index)
        dpb, stream = self.EL_codec.compress(x_el, contexts, latent_prior, dpb["ref_ys"], q_in_ckpt, q_index)
        return base_dpb, dpb, [base_stream, stream]

    def decompress(self, payloads, height: int, width: int, base_dpb: Dict, dpb: Dict, q_index: int,
                   frame_index: int, q_in_ckpt: bool = False):
        """Decode a frame of height x width from [base payload, enhancement payload].

        Returns (new base dpb, new enhancement dpb).
        """
        base_dpb = self.decompress_base(payloads[0], height, width, base_dpb, q_index, frame_index, q_in_ckpt=q_in_ckpt)
        contexts, latent_prior = self._enhancement_inputs(base_dpb, dpb, frame_index)
        dpb = self.EL_codec.decompress(payloads[1], contexts, latent_prior, dpb["ref_ys"], q_in_ckpt, q_index)
        return base_dpb, dpb

    def decompress_base(self, payload: bytes, height: int, width: int, base_dpb: Dict, q_index: int,
                        frame_index: int, fast: bool = False, q_in_ckpt: bool = False) -> Dict:
        """Decode only the base layer (skim decoding) of a full (`fast` False) or fast-mode stream."""
        bh, bw = base_size(height, width, fast=fast, ratio=self.ratio)
        return self.BL_codec.decompress(base_dpb, payload, bh, bw, q_in_ckpt, q_index, frame_index)
