"""Latent codecs: each latent of a codec is quantized, modelled and entropy-coded by one module
(the design of CompressAI's `latent_codecs`) that owns the networks of its entropy model, the
entropy model itself and its calls to the rANS coder. A codec is its transforms plus its latent
codecs.

| latent codec | codes | entropy model |
|---|---|---|
| `HyperpriorLatentCodec` | the hyperprior latent z of a latent y, and the features it gives y's prior | factorized (`BitEstimator`) |
| `FourPartLatentCodec` | a latent y given its prior's parameters, in DCVC-DC's four spatial steps | Gaussian or Laplace scale table |
"""
from .base import CodedLatent, LatentCodec, checkpoint_layout, use_noisy_rate
from .four_part import FourPartLatentCodec
from .hyperprior import HyperpriorLatentCodec

__all__ = ["CodedLatent", "FourPartLatentCodec", "HyperpriorLatentCodec", "LatentCodec", "checkpoint_layout",
           "use_noisy_rate"]
