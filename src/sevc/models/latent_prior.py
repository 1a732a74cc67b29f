"""Spatial-guided latent prior (SEVC, Sec. 3.3).

The base layer's latent is upsampled 4x (two sub-pixel layers) to the enhancement latent
grid and used as the query of a Swin transformer with 3D windows (4 frames x 8 x 8), whose
other 3 frames are the latest enhancement latents (empty queue slots hold the query).
Residual Swin transformer blocks (RSTB): 4 of depth 4, 8 heads, embedding 128, windows
shifted in every second block.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.layers import subpel_conv
from ..nn.ops import GELU, Conv2d, LayerNorm, Linear, matmul, softmax
from ..nn.padding import crop, pad_to_multiple

LATENT_CH = 128
WINDOW = (4, 8, 8)
SHIFT = (4, 4, 4)
# The published scripts build the model with inplace=True, which reaches the upsampler's
# LeakyReLU positionally as its negative slope: 1.0, an identity. The checkpoints were
# evaluated that way.
UPSAMPLER_SLOPE = 1.0


def window_partition(x: torch.Tensor, window: Tuple[int, int, int]) -> torch.Tensor:
    """[B, D, H, W, C] -> [B * windows, wd * wh * ww, C]."""
    b, d, h, w, c = x.shape
    x = x.view(b, d // window[0], window[0], h // window[1], window[1], w // window[2], window[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).contiguous().view(-1, window[0] * window[1] * window[2], c)


def window_reverse(windows: torch.Tensor, window: Tuple[int, int, int], b: int, d: int, h: int, w: int) -> torch.Tensor:
    """Inverse of window_partition: -> [B, D, H, W, C]."""
    x = windows.view(b, d // window[0], h // window[1], w // window[2], window[0], window[1], window[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).contiguous().view(b, d, h, w, -1)


def relative_position_index(window: Tuple[int, int, int]) -> torch.Tensor:
    """Index [N, N] into the relative position bias table, N = wd * wh * ww."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in window], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    for axis, size in enumerate(window):
        rel[:, :, axis] += size - 1
    rel[:, :, 0] *= (2 * window[1] - 1) * (2 * window[2] - 1)
    rel[:, :, 1] *= 2 * window[2] - 1
    return rel.sum(-1)


@lru_cache(maxsize=16)
def shifted_window_mask(depth: int, height: int, width: int, window: Tuple[int, int, int],
                        shift: Tuple[int, int, int], device: torch.device,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Attention mask [windows, N, N] (0 or -100) keeping shifted windows from mixing regions."""
    padded = [-(-size // win) * win for size, win in zip((depth, height, width), window)]
    labels = torch.zeros((1, *padded, 1), device=device)
    bounds = [(slice(0, p - win), slice(p - win, p - s), slice(p - s, p)) for p, win, s in zip(padded, window, shift)]
    count = 0
    for d in bounds[0]:
        for h in bounds[1]:
            for w in bounds[2]:
                labels[:, d, h, w, :] = count
                count += 1
    labels = window_partition(labels, window).view(-1, window[0] * window[1] * window[2])
    mask = labels.unsqueeze(1) - labels.unsqueeze(2)
    return mask.masked_fill(mask != 0, float(-100.0)).masked_fill(mask == 0, float(0.0)).to(dtype)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside 3D windows, with a relative position bias."""

    def __init__(self, dim: int, window: Tuple[int, int, int], num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        table = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = Linear(dim, dim * 3)
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B * windows, N, C]; mask [windows, N, N] or None."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).contiguous()
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = matmul(q * self.scale, k.transpose(-2, -1))
        bias = self.relative_position_bias_table[self.relative_position_index[:n, :n].reshape(-1)].reshape(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(b // windows, windows, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        return self.proj(matmul(softmax(attn), v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = GELU()
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention then MLP, each pre-normed and residual, on [B, D, H, W, C]."""

    def __init__(self, dim: int, num_heads: int, window: Tuple[int, int, int], shift: Tuple[int, int, int],
                 mlp_ratio: float = 2.0):
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, d, h, w, c = x.shape
        shifted = any(s > 0 for s in self.shift)
        pads = [(-size) % win for size, win in zip((d, h, w), self.window)]
        y = F.pad(self.norm1(x), (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        _, dp, hp, wp, _ = y.shape
        if shifted:
            y = torch.roll(y, shifts=tuple(-s for s in self.shift), dims=(1, 2, 3))
        y = self.attn(window_partition(y, self.window), mask=mask if shifted else None)
        y = window_reverse(y.view(-1, *(self.window + (c,))), self.window, b, dp, hp, wp)
        if shifted:
            y = torch.roll(y, shifts=self.shift, dims=(1, 2, 3))
        if any(pads):
            y = y[:, :d, :h, :w, :].contiguous()
        x = x + y
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window: Tuple[int, int, int]):
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, num_heads, window, (0, 0, 0) if i % 2 == 0 else (window[0], window[1] // 2, window[2] // 2))
            for i in range(depth)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, C, D, H, W] -> same shape."""
        x = x.permute(0, 2, 3, 4, 1).contiguous()
        for block in self.blocks:
            x = block(x, mask)
        return x.permute(0, 4, 1, 2, 3).contiguous()


class RSTB(nn.Module):
    """Residual Swin transformer block: Swin blocks, a per-frame 3x3 conv, a skip."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: Tuple[int, int, int]):
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window)
        self.conv = Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, H, W] -> same shape."""
        n, c, t, h, w = x.shape
        y = self.residual_group(x, mask).permute(0, 2, 1, 3, 4).contiguous().view(-1, c, h, w)
        y = self.conv(y).view(n, t, -1, h, w).permute(0, 2, 1, 3, 4).contiguous()
        return y + x


class PatchEmbed(nn.Module):
    """[B, T, C, H, W] -> [B, C, T, H, W], layer-normed over C."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).contiguous()
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).view(-1, c, t, h, w)


class SwinFusion(nn.Module):
    """Fuses frames [B, T, C, H, W] (frame 0 the query) into a prior [B, C, H, W] for frame 0.

    H and W must be multiples of the window (8). `conv_first` and `conv_first_feat` are in
    the official checkpoint but unused by the model.
    """

    def __init__(self, dim: int = LATENT_CH, depths: Sequence[int] = (4, 4, 4, 4),
                 num_heads: Sequence[int] = (8, 8, 8, 8), window: Tuple[int, int, int] = WINDOW):
        super().__init__()
        self.window = window
        self.conv_first = Conv2d(dim, dim, 3, 1, 1)
        self.conv_first_feat = Conv2d(64, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(dim)
        self.layers = nn.ModuleList([RSTB(dim, depth, heads, window) for depth, heads in zip(depths, num_heads)])
        self.norm = LayerNorm(dim)
        self.conv_after_body = Conv2d(dim, dim, 3, 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(frames)
        # The published model builds its mask for 2 frames: shifting the 4-frame window
        # by 4 along time is a no-op, so only the spatial shift needs masking.
        mask = shifted_window_mask(2, x.shape[3], x.shape[4], self.window, SHIFT, x.device, x.dtype)
        for layer in self.layers:
            x = layer(x.contiguous(), mask)
        x = self.norm(x.permute(0, 2, 3, 4, 1).contiguous()).permute(0, 1, 4, 2, 3).contiguous()
        return self.conv_after_body(x[:, 0]) + frames[:, 0]


class SpatialGuidedLatentPrior(nn.Module):
    """The spatial-guided latent prior (Sec. 3.3): the base latent, upsampled, and the latent queue
    -> the prior of the enhancement latent. It is the P-frame checkpoint's `latent_ILP`."""

    def __init__(self, upsampler_slope: float = UPSAMPLER_SLOPE):
        super().__init__()
        self.upsampler = nn.Sequential(
            subpel_conv(LATENT_CH, LATENT_CH, 2, kernel_size=3),
            nn.LeakyReLU(upsampler_slope),
            subpel_conv(LATENT_CH, LATENT_CH, 2, kernel_size=3),
        )
        self.fusion = SwinFusion()

    def forward(self, base_y_hat: torch.Tensor, latents: Sequence[Optional[torch.Tensor]], height: int,
                width: int) -> torch.Tensor:
        """base_y_hat [B, 128, h, w] -> prior [B, 128, height, width] (height <= 4h, width <= 4w).

        latents: the latent queue, oldest first, None for empty slots.
        """
        query = crop(self.upsampler(base_y_hat), height, width)
        query = pad_to_multiple(query, self.fusion.window[1], mode="replicate")
        keys = [query if y is None else pad_to_multiple(y, self.fusion.window[1], mode="replicate") for y in latents]
        return crop(self.fusion(torch.stack([query, *keys], dim=1)), height, width)
