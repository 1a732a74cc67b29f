"""Decode an SEVC bitstream, full or 4x-downsampled (the published decoder.py flags); see README.md."""
import sys

from sevc.cli.decode import entry

if __name__ == "__main__":
    sys.exit(entry())
