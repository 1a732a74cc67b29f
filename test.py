"""RD evaluation of a test configuration (the published test.py flags); see README.md."""
import sys

from sevc.cli.evaluate import entry

if __name__ == "__main__":
    sys.exit(entry())
