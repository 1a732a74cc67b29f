"""The SEVC P-frame model: base layer + MFCA + spatial-guided latent prior + enhancement layer.

Its state_dict is the official `cvpr2025_p_frame.pth.tar`. Frames are coded in two layers: the
base layer codes the frame downsampled by `ratio` (4), the enhancement layer the full frame with
contexts and a latent prior augmented by the base layer's references.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from ..nn.ops import Conv2d
from ..nn.padding import FRAME_MULTIPLE, LATENT_STRIDE, crop, pad_to_multiple, padded_size
from ..nn.resample import imresize
from .base_layer import BaseLayerCodec
from .buffers import BaseBuffer, Buffers, EnhancementBuffer
from .codec_base import Compressed, Estimated
from .enhancement_layer import EnhancementLayerCodec
from .latent_prior import SpatialGuidedLatentPrior
from .mfca import MFCA
from .rate import Rate
from .temporal_context import CH_1X, Contexts, adapt_reference


def base_input(x: torch.Tensor, ratio: int = 4) -> torch.Tensor:
    """The base layer's input: x [B, 3, h, w] bicubic-downsampled by `ratio`, zero-padded to multiples of 16."""
    return pad_to_multiple(imresize(x, 1.0 / ratio), FRAME_MULTIPLE, mode="constant")


def base_size(height: int, width: int, fast: bool = False, ratio: int = 4) -> Tuple[int, int]:
    """Size the base layer codes (multiples of 16) for a frame of height x width: full mode
    downsamples the 16-padded frame, fast mode the frame itself (as published)."""
    h, w = (height, width) if fast else padded_size(height, width, FRAME_MULTIPLE)
    return padded_size(-(-h // ratio), -(-w // ratio), FRAME_MULTIPLE)


class SEVC(nn.Module):
    """Two-layer P-frame codec of frames x [1, 3, H, W] in [0, 1], any H, W >= 64; its state is
    the Buffers of both layers. `frame_index` (the frame's position since the last I-frame) picks
    the hierarchical feature adaptors (frame_index % 4). Attribute names are checkpoint names:
    `BL_codec` is the base layer, `ILP` MFCA, `latent_ILP` the latent prior, `EL_codec` the
    enhancement layer."""

    TRANSFORMS = tuple(f"{layer}.{name}" for layer in ("BL_codec", "EL_codec") for name in (
        "contextual_encoder", "contextual_decoder", "recon_generation_net", "temporal_prior_encoder")) + (
        "BL_codec.optic_flow", "BL_codec.mv_decoder", "BL_codec.feature_extractor", "BL_codec.context_fusion_net",
        "latent_ILP.upsampler")  # see compile_transforms

    def __init__(self, anchor_num: int = 4, ratio: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__()
        if ratio != int(ratio) or ratio < 1:
            raise ValueError(f"the base-layer ratio must be a positive integer, got {ratio}")
        self.ratio = int(ratio)
        self.BL_codec = BaseLayerCodec(anchor_num, ec_thread, stream_part)
        self.ILP = MFCA(iter_num=2)
        self.latent_ILP = SpatialGuidedLatentPrior()
        self.EL_codec = EnhancementLayerCodec(anchor_num, ec_thread, stream_part)
        self.feature_adaptor_I = Conv2d(3, CH_1X, 3, stride=1, padding=1)
        self.feature_adaptor = nn.ModuleList([Conv2d(CH_1X, CH_1X, 1) for _ in range(3)])

    def update(self, force: bool = False) -> None:
        """Build both layers' entropy coders (needed before compress / decompress)."""
        self.BL_codec.update(force)
        self.EL_codec.update(force)

    def buffers_after_intra(self, x_hat: torch.Tensor, base_layer_only: bool = False) -> Buffers:
        """Both layers' buffers after an I-frame reconstruction x_hat [B, 3, H16, W16]; only the
        base layer's if `base_layer_only` (a fast stream, skim decoding)."""
        base = BaseBuffer(base_input(x_hat, self.ratio))
        return Buffers(base, None if base_layer_only else EnhancementBuffer(x_hat))

    def _enhancement_inputs(self, base: BaseBuffer, enhancement: EnhancementBuffer,
                            frame_index: int) -> Tuple[Contexts, torch.Tensor]:
        """MFCA's hybrid contexts and the spatial-guided latent prior of the enhancement layer."""
        height, width = enhancement.frame.shape[2:]
        small_h, small_w = height // self.ratio, width // self.ratio
        ref_feature = adapt_reference(self.feature_adaptor_I, self.feature_adaptor, enhancement.frame,
                                      enhancement.feature, frame_index)
        contexts = self.ILP(crop(base.feature, small_h, small_w), crop(base.mv, small_h, small_w), ref_feature,
                            enhancement.frame)
        latent_prior = self.latent_ILP(base.y, enhancement.latents, height // LATENT_STRIDE, width // LATENT_STRIDE)
        return contexts, latent_prior

    def enhance(self, x_el: torch.Tensor, base: BaseBuffer, enhancement: EnhancementBuffer, *, rate: Rate,
                frame_index: int) -> Estimated[EnhancementBuffer]:
        """The enhancement layer with estimated bits (test path, and training in train mode), once
        the base layer has coded the frame into `base`. x_el [B, 3, H, W] in [0, 1], H and W
        multiples of 16; the reconstruction (the new buffer's frame) is not clamped."""
        contexts, latent_prior = self._enhancement_inputs(base, enhancement, frame_index)
        return self.EL_codec(x_el, enhancement, contexts=contexts, latent_prior=latent_prior, rate=rate)

    def forward(self, x: torch.Tensor, buffers: Buffers, *, rate: Rate, frame_index: int) -> Estimated[Buffers]:
        """Test path: both layers' new buffers and their estimated bits (a 0-d tensor). The
        enhancement reconstruction (padded size) is not clamped."""
        x_el = pad_to_multiple(x, FRAME_MULTIPLE, mode="replicate")
        base = self.BL_codec(base_input(x_el, self.ratio), buffers.base, rate=rate, frame_index=frame_index)
        enhanced = self.enhance(x_el, base.state, buffers.enhancement, rate=rate, frame_index=frame_index)
        return Estimated(Buffers(base.state, enhanced.state), base.bits + enhanced.bits)

    def compress(self, x: torch.Tensor, buffers: Buffers, *, rate: Rate, frame_index: int) -> Compressed[Buffers]:
        """Encode x [1, 3, H, W] in both layers: payloads (base layer, enhancement layer)."""
        x_el = pad_to_multiple(x, FRAME_MULTIPLE, mode="replicate")
        base = self.BL_codec.compress(base_input(x_el, self.ratio), buffers.base, rate=rate, frame_index=frame_index)
        contexts, latent_prior = self._enhancement_inputs(base.state, buffers.enhancement, frame_index)
        enhanced = self.EL_codec.compress(x_el, buffers.enhancement, contexts=contexts, latent_prior=latent_prior,
                                          rate=rate)
        return Compressed(Buffers(base.state, enhanced.state), base.payloads + enhanced.payloads)

    def compress_base(self, x: torch.Tensor, buffer: BaseBuffer, *, rate: Rate,
                      frame_index: int) -> Compressed[BaseBuffer]:
        """Encode only the base layer of x [1, 3, H, W] (fast mode), downsampled as it is."""
        return self.BL_codec.compress(base_input(x, self.ratio), buffer, rate=rate, frame_index=frame_index)

    def decompress(self, payloads: Sequence[bytes], buffers: Buffers, height: int, width: int, *, rate: Rate,
                   frame_index: int) -> Buffers:
        """Decode a frame of height x width from (base payload, enhancement payload)."""
        base = self.decompress_base(payloads[0], buffers.base, height, width, rate=rate, frame_index=frame_index)
        contexts, latent_prior = self._enhancement_inputs(base, buffers.enhancement, frame_index)
        enhancement = self.EL_codec.decompress(payloads[1], buffers.enhancement, contexts=contexts,
                                               latent_prior=latent_prior, rate=rate)
        return Buffers(base, enhancement)

    def decompress_base(self, payload: bytes, buffer: BaseBuffer, height: int, width: int, *, rate: Rate,
                        frame_index: int, fast: bool = False) -> BaseBuffer:
        """Decode only the base layer of a frame of height x width (skim decoding) from a full
        (`fast` False) or a fast-mode stream."""
        base_h, base_w = base_size(height, width, fast=fast, ratio=self.ratio)
        return self.BL_codec.decompress(payload, buffer, base_h, base_w, rate=rate, frame_index=frame_index)
