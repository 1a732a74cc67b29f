"""The I-frame codec: DCVC-DC's intra model ("IntraNoAR"), used as is by SEVC.

Analysis transform to a latent y (1/16 resolution, 256 channels), a hyperprior z (1/64),
the four-part spatial prior with a Gaussian model, and a synthesis transform followed by
a U-Net refinement. Variable rate through per-channel quantization scales.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from .codec_base import EntropyCodedModel
from .layers import DepthConvBlock, ResidualBlockUpsample, ResidualBlockWithStride, UNet, conv3x3
from .padding import crop, downsampled_shape, pad_to_multiple
from .quantization import quantize, rate_proxy
from .spatial_prior import FourPartPrior

FRAME_PAD = 16  # frames are replicate-padded to multiples of 16


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
            nn.Conv2d(n, n, 3, stride=2, padding=1),
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
    """DCVC-DC intra codec. Frames must be padded to multiples of 16 (see `pad_frame`).

    q: `q_in_ckpt=True` picks one of the checkpoint's `anchor_num` rates by index,
    otherwise `q_index` in 0..63 picks a log-interpolated level between the first and last.
    """

    def __init__(self, N: int = 256, anchor_num: int = 4, ec_thread: bool = False, stream_part: int = 1):
        super().__init__("gaussian", z_channel=N, ec_thread=ec_thread, stream_part=stream_part)
        self.add_q_params("", 128, 128, anchor_num)

        self.enc = IntraEncoder(N)
        self.hyper_enc = nn.Sequential(
            gated_block(N, N),
            nn.Conv2d(N, N, 3, stride=2, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(N, N, 3, stride=2, padding=1),
        )
        self.hyper_dec = nn.Sequential(
            ResidualBlockUpsample(N, N, 2),
            ResidualBlockUpsample(N, N, 2),
            gated_block(N, N),
        )
        self.y_prior_fusion = nn.Sequential(gated_block(N, N * 2), gated_block(N * 2, N * 3))
        self.y_spatial_prior_adaptor_1 = nn.Conv2d(N * 4, N * 3, 1)
        self.y_spatial_prior_adaptor_2 = nn.Conv2d(N * 4, N * 3, 1)
        self.y_spatial_prior_adaptor_3 = nn.Conv2d(N * 4, N * 3, 1)
        self.y_spatial_prior = nn.Sequential(
            gated_block(N * 3, N * 3),
            gated_block(N * 3, N * 2),
            gated_block(N * 2, N * 2),
        )
        self.dec = IntraDecoder(N)
        self.refine = nn.Sequential(UNet(16, 16, gated=True), conv3x3(16, 3))
        self.prior = FourPartPrior(
            (self.y_spatial_prior_adaptor_1, self.y_spatial_prior_adaptor_2, self.y_spatial_prior_adaptor_3),
            self.y_spatial_prior,
        )

    @staticmethod
    def pad_frame(x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] replicate-padded to multiples of 16."""
        return pad_to_multiple(x, FRAME_PAD, mode="replicate")

    def q_steps(self, q_in_ckpt: bool, q_index: int):
        """(encoder, decoder) quantization scales [1, 128, 1, 1] for a rate."""
        return self.q_step_pair("", q_in_ckpt, q_index)

    def _prior_params(self, z_hat: torch.Tensor, y_height: int, y_width: int) -> torch.Tensor:
        params = self.y_prior_fusion(self.hyper_dec(z_hat))
        return crop(params, y_height, y_width)

    def _analyze(self, x: torch.Tensor, q_enc: torch.Tensor):
        y = self.enc(x, q_enc)
        z = self.hyper_enc(self.pad_latent(y))
        z_hat = quantize(z, self.training)
        params = self._prior_params(z_hat, y.shape[2], y.shape[3])
        return y, rate_proxy(z, z_hat, self.training), self.prior.forward(y, params, self.training)

    def _synthesize(self, y_hat: torch.Tensor, q_dec: torch.Tensor) -> torch.Tensor:
        return self.refine(self.dec(y_hat, q_dec))

    def forward(self, x: torch.Tensor, q_in_ckpt: bool = False, q_index: int = 0) -> Dict[str, torch.Tensor]:
        """Test path: x [B, 3, H, W] in [0, 1], H and W multiples of 16.

        Returns x_hat [B, 3, H, W] (not clamped) and bit (estimated total bits, a 0-d tensor).
        """
        q_enc, q_dec = self.q_steps(q_in_ckpt, q_index)
        y, z_hat, coded = self._analyze(x, q_enc)
        x_hat = self._synthesize(coded.y_hat, q_dec)
        pixels = x.shape[2] * x.shape[3]
        bpp_y = torch.sum(self.latent_model.bits(coded.y_q, coded.scales), dim=(1, 2, 3)) / pixels
        bpp_z = torch.sum(self.bit_estimator_z.bits(z_hat), dim=(1, 2, 3)) / pixels
        return {"x_hat": x_hat, "bit": torch.sum(bpp_y + bpp_z) * pixels}

    def compress(self, x: torch.Tensor, q_in_ckpt: bool = False, q_index: int = 0) -> Dict[str, object]:
        """Encode x [1, 3, H, W] (H, W multiples of 16) to a rANS stream.

        Returns bit_stream (bytes) and x_hat [1, 3, H, W], the decoder's reconstruction in [0, 1].
        """
        q_enc, q_dec = self.q_steps(q_in_ckpt, q_index)
        y, z_hat, coded = self._analyze(x, q_enc)
        coder = self.coder()
        coder.reset()
        self.bit_estimator_z.encode(coder, z_hat)
        for y_q, scales in coded.steps:
            self.latent_model.encode(coder, y_q, scales)
        bit_stream = coder.flush()
        return {"bit_stream": bit_stream, "x_hat": self._synthesize(coded.y_hat, q_dec).clamp_(0, 1)}

    def decompress(self, bit_stream: bytes, height: int, width: int, q_in_ckpt: bool = False,
                   q_index: int = 0) -> Dict[str, torch.Tensor]:
        """Decode a frame of height x width pixels; x_hat [1, 3, H16, W16] in [0, 1] (padded size)."""
        device = self.q_basic_dec.device
        _, q_dec = self.q_steps(q_in_ckpt, q_index)
        coder = self.coder()
        coder.set_stream(bit_stream)
        z_hat = self.bit_estimator_z.decode(coder, downsampled_shape(height, width, 64), device)
        y_height, y_width = downsampled_shape(height, width, 16)
        params = self._prior_params(z_hat, y_height, y_width)
        y_hat = self.prior.decode(params, lambda scales: self.latent_model.decode(coder, scales))
        coder.finish()
        return {"x_hat": self._synthesize(y_hat, q_dec).clamp_(0, 1)}
