"""Standard-codec anchors (x264, x265, VVC, AV1) of a test configuration, in test.py's result schema; see README.md."""
import sys

from sevc.cli.launch import anchors

if __name__ == "__main__":
    sys.exit(anchors())
