"""The I-frame codec: DCVC-DC's intra model ("IntraNoAR"), used as is by SEVC.

Analysis transform to a latent y (1/16 resolution, 256 channels), a hyperprior z (1/64),
the four-part spatial prior with a Gaussian model, and a synthesis transform followed by
a U-Net refinement. Variable rate through per-channel quantization scales.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..latent_codecs import CodedLatent, FourPartLatentCodec, HyperpriorLatentCodec
from ..nn.layers import DepthConvBlock, ResidualBlockUpsample, ResidualBlockWithStride, UNet, conv3x3
from ..nn.ops import Conv2d
from ..nn.padding import FRAME_MULTIPLE, HYPER_STRIDE, LATENT_STRIDE, crop, pad_to_multiple, strided_size
from .codec_base import Compressed, EntropyCodedModel, Estimated
from .rate import Rate


def gated_block(in_ch: int, out_ch: int) -> DepthConvBlock:
    return DepthConvBlock(in_ch, out_ch, gated=True)


class IntraEncoder(nn.Module):
    """x [B, 3, H, W] -> y [B, N, H/16, W/16]; the quantization scale acts at 1/2 resolution."""

    def __init__(self, n: int):
        super().__init__()
        self.enc_1 = nn.Sequential(ResidualBlockWithStride(3, 128, stride=2), gated_block(128, 128))
        self.enc_2 = nn.Sequential(
            ResidualBlockWithStride(128, 192, stride=2),
            gated_block(192, 192),
            ResidualBlockWithStride(192, n, stride=2),
            gated_block(n, n),
            Conv2d(n, n, 3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor, quant_step: torch.Tensor) -> torch.Tensor:
        return self.enc_2(self.enc_1(x) * quant_step)


class IntraDecoder(nn.Module):
    """y_hat [B, N, H/16, W/16] -> features [B, 16, H, W]; the quantization scale acts at 1/2."""

    def __init__(self, n: int):
        super().__init__()
        self.dec_1 = nn.Sequential(
            gated_block(n, n),
            ResidualBlockUpsample(n, n, 2),
            gated_block(n, n),
            ResidualBlockUpsample(n, 192, 2),
            gated_block(192, 192),
            ResidualBlockUpsample(192, 128, 2),
        )
        self.dec_2 = nn.Sequential(gated_block(128, 128), ResidualBlockUpsample(128, 16, 2))

    def forward(self, y_hat: torch.Tensor, quant_step: torch.Tensor) -> torch.Tensor:
        return self.dec_2(self.dec_1(y_hat) * quant_step)


class IntraNoAR(EntropyCodedModel):
    """DCVC-DC's intra codec. Frames x [B, 3, H, W] in [0, 1], H and W multiples of 16 (see
    `pad_frame`); its state is the reconstruction x_hat [B, 3, H, W] (clamped to [0, 1] when
    compressed or decompressed, not on the test path). Latent codecs: `hyperprior` (z) and
    `y_latent` (the four-part prior, Gaussian)."""

    TRANSFORMS = ("enc", "hyperprior.encoder", "hyperprior.decoder", "y_prior_fusion", "dec", "refine")  # see compile_transforms
    CHECKPOINT_ORDER = ("bit_estimator_z", "enc", "hyper_enc", "hyper_dec", "y_prior_fusion",
                        "y_spatial_prior_adaptor_1", "y_spatial_prior_adaptor_2", "y_spatial_prior_adaptor_3",
                        "y_spatial_prior", "dec", "refine")

    def __init__(self, N: int = 256, anchor_num: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__(ec_thread=ec_thread, stream_part=stream_part)
        self.add_q_scales("", 128, 128, anchor_num)
        self.enc = IntraEncoder(N)
        hyper_enc = nn.Sequential(
            gated_block(N, N),
            Conv2d(N, N, 3, stride=2, padding=1),
            nn.LeakyReLU(),
            Conv2d(N, N, 3, stride=2, padding=1),
        )
        hyper_dec = nn.Sequential(
            ResidualBlockUpsample(N, N, 2),
            ResidualBlockUpsample(N, N, 2),
            gated_block(N, N),
        )
        self.hyperprior = HyperpriorLatentCodec(hyper_enc, hyper_dec, N, {
            "encoder": "hyper_enc", "decoder": "hyper_dec", "bit_estimator": "bit_estimator_z"})
        self.y_prior_fusion = nn.Sequential(gated_block(N, N * 2), gated_block(N * 2, N * 3))
        self.y_latent = FourPartLatentCodec(N, "y", "gaussian", gated=True)
        self.dec = IntraDecoder(N)
        self.refine = nn.Sequential(UNet(16, 16, gated=True), conv3x3(16, 3))

    @staticmethod
    def pad_frame(x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] replicate-padded to multiples of 16."""
        return pad_to_multiple(x, FRAME_MULTIPLE, mode="replicate")

    def _y_params(self, hyper: torch.Tensor, y_height: int, y_width: int) -> torch.Tensor:
        return crop(self.y_prior_fusion(hyper), y_height, y_width)

    def _analyze(self, x: torch.Tensor, q_enc: torch.Tensor) -> Tuple[CodedLatent, CodedLatent]:
        """The coded latents: the hyperprior's z and the frame's y."""
        y = self.enc(x, q_enc)
        z, hyper = self.hyperprior(y)
        return z, self.y_latent(y, self._y_params(hyper, y.shape[2], y.shape[3]))

    def _synthesize(self, y_hat: torch.Tensor, q_dec: torch.Tensor) -> torch.Tensor:
        return self.refine(self.dec(y_hat, q_dec))

    def forward(self, x: torch.Tensor, *, rate: Rate) -> Estimated[torch.Tensor]:
        """Test path (and training in train mode): the reconstruction (not clamped) and the
        estimated bits of the batch."""
        q_enc, q_dec = self.q_scales("", rate)
        z, y = self._analyze(x, q_enc)
        return Estimated(self._synthesize(y.y_hat, q_dec), y.bits() + z.bits())

    def compress(self, x: torch.Tensor, *, rate: Rate) -> Compressed[torch.Tensor]:
        """Encode x [1, 3, H, W] into one payload; the state is the decoder's reconstruction."""
        q_enc, q_dec = self.q_scales("", rate)
        z, y = self._analyze(x, q_enc)
        payload = self.payload((z, y))
        return Compressed(self._synthesize(y.y_hat, q_dec).clamp_(0, 1), (payload,))

    def decompress(self, payload: bytes, height: int, width: int, *, rate: Rate) -> torch.Tensor:
        """Decode a frame of height x width pixels: x_hat [1, 3, H16, W16] (the padded size) in [0, 1]."""
        _, q_dec = self.q_scales("", rate)
        with self.reading(payload) as coder:
            hyper = self.hyperprior.decode(coder, strided_size(height, width, HYPER_STRIDE), self.device)
            y_hat = self.y_latent.decode(coder, self._y_params(hyper, *strided_size(height, width, LATENT_STRIDE)))
        return self._synthesize(y_hat, q_dec).clamp_(0, 1)
