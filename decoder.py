"""Decode an SEVC bitstream, full or 4x-downsampled (the published decoder.py flags); see README.md."""
import sys

from sevc.cli.launch import decode

if __name__ == "__main__":
    sys.exit(decode())
