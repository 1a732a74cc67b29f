"""The demo: encode and decode the bundled sample clip (see README.md)."""
import sys

from sevc.cli.launch import demo

if __name__ == "__main__":
    sys.exit(demo())
