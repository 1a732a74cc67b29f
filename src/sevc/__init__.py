"""sevc: the Spatially Embedded Video Codec (SEVC, CVPR 2025) in PyTorch."""

__version__ = "0.1.0"
