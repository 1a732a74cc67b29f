"""The demo: encode and decode the bundled sample clip (see README.md)."""
import sys

from sevc.cli.demo import entry

if __name__ == "__main__":
    sys.exit(entry())
