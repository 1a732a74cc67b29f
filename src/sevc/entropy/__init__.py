"""Entropy coding: the rANS coder, the factorized and scale-table entropy models, the four-part
spatial prior, and quantization."""
