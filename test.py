"""RD evaluation of a test configuration (the published test.py flags); see README.md."""
import sys

from sevc.cli.launch import test

if __name__ == "__main__":
    sys.exit(test())
