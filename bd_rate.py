"""BD-rate tables and RD curves from test.py result files; see README.md."""
import sys

from sevc.cli.launch import bdrate

if __name__ == "__main__":
    sys.exit(bdrate())
