"""bd_rate.py: BD-rate tables (like the paper's Tables 1-2) and RD curves from test.py results."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import ReportError
from ..eval.bd_rate import check_comparable, summarize
from ..eval.rd_report import not_comparable_messages, write_report
from ..eval.results import Results, load_results
from ..io.outputs import OutputKind, atomic_dir, check_folder
from .common import ArgumentParser, add_overwrite_arg, run

REPORT = OutputKind("a BD-rate report", r"bd_rate\.(json|md)")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="BD-rate and RD curves of test.py result files against an anchor")
    parser.add_argument("--anchor", required=True, metavar="NAME=JSON", help="anchor results (e.g. VTM=vtm.json)")
    parser.add_argument("--test", required=True, nargs="+", metavar="NAME=JSON", help="results to compare")
    parser.add_argument("-o", "--output_path", required=True, help="output folder: bd_rate.json, bd_rate.md, "
                                                                   "rd_<dataset>_<metric>.png")
    add_overwrite_arg(parser)
    return parser.parse_args(argv)


def parse_named(values: List[str]) -> List[Tuple[str, str]]:
    """NAME=path.json arguments (a bare path is named after its file)."""
    named = []
    for value in values:
        name, sep, path = value.partition("=")
        named.append((name, path) if sep else (Path(value).stem, value))
    return named


def load_tests(values: List[str], anchor_name: str) -> Dict[str, Results]:
    """{codec name: results} of the --test arguments; each name once, none the anchor's."""
    tests: Dict[str, Results] = {}
    for name, path in parse_named(values):
        if name in tests or name == anchor_name:
            raise ReportError(f"the name {name} is given twice; name the files NAME=JSON")
        tests[name] = load_results(path)
    return tests


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    (anchor_name, anchor_path), = parse_named([args.anchor])
    inputs = [anchor_path, *(path for _, path in parse_named(args.test))]
    check_folder(args.output_path, REPORT, args.overwrite, inputs)
    anchor = load_results(anchor_path)
    tests = load_tests(args.test, anchor_name)
    summary = summarize(anchor_name, anchor, tests)
    for message in not_comparable_messages(summary, anchor_name):
        print(f"warning: {message}", file=sys.stderr)
    check_comparable(summary)
    with atomic_dir(args.output_path, REPORT, args.overwrite, inputs) as out:
        write_report(anchor_name, anchor, tests, summary, out)
        print((out / "bd_rate.md").read_text(), end="")
    print(f"written to {args.output_path}")
    return 0


def entry() -> int:
    return run(main)
