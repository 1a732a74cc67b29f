"""bd_rate.py: BD-rate tables (like the paper's Tables 1-2) and RD curves from test.py results."""
from __future__ import annotations

import argparse
from typing import List, Optional

from ..outputs import atomic_dir
from ..rd_report import load_results, parse_named, report
from .common import run


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="BD-rate and RD curves of test.py result files against an anchor")
    parser.add_argument("--anchor", required=True, metavar="NAME=JSON", help="anchor results (e.g. VTM=vtm.json)")
    parser.add_argument("--test", required=True, nargs="+", metavar="NAME=JSON", help="results to compare")
    parser.add_argument("-o", "--output_path", required=True, help="output folder: bd_rate.json, bd_rate.md, "
                                                                   "rd_<dataset>_<metric>.png")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    (anchor_name, anchor_path), = parse_named([args.anchor])
    anchor = load_results(anchor_path)
    tests = {name: load_results(path) for name, path in parse_named(args.test)}
    with atomic_dir(args.output_path, stale="rd_*.png") as out:
        report(anchor_name, anchor, tests, out)
        print((out / "bd_rate.md").read_text(), end="")
    print(f"written to {args.output_path}")
    return 0


def entry() -> int:
    return run(main)
