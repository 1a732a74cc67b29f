"""Files in and out: video frames (PNG folders, raw YUV) and safe, atomic outputs."""
