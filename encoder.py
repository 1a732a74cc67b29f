"""Encode a PNG folder or raw YUV file into an SEVC bitstream (the published encoder.py flags); see README.md."""
import sys

from sevc.cli.launch import encode

if __name__ == "__main__":
    sys.exit(encode())
