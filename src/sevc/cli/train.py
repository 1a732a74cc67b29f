"""train.py: train or fine-tune one stage of SEVC (single process, or under torchrun)."""
from __future__ import annotations

import argparse
import json
from typing import Dict, List, Optional

from ..errors import SevcError
from ..training.trainer import RESUMABLE, load_config, resume_config, train
from .common import ArgumentParser, add_overwrite_arg, run


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Train one SEVC stage (see train_configs/ and README.md)")
    parser.add_argument("--config", help="stage configuration JSON (with --resume: the run's own config.json)")
    parser.add_argument("-o", "--output", required=True, help="output folder (weights, train state, log)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder, with its own configuration; --set may change "
                             + ", ".join(RESUMABLE))
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override configuration entries (repeatable); VALUE is JSON (or a string), "
                             "KEY may be nested with dots: data.root=/data/vimeo")
    add_overwrite_arg(parser)
    args = parser.parse_args(argv)
    if args.config is None and not args.resume:
        parser.error("--config is required (but for --resume, which uses the run's own config.json)")
    return args


def overrides(pairs: List[str]) -> Dict:
    """{key: value} from KEY=VALUE strings, nested keys (a.b) as nested dicts; a key given both as
    a value and as an object of nested keys (a=2 a.b=1) is an error."""
    result: Dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key or "" in key.split("."):
            raise SevcError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")
        node = result
        for depth, parent in enumerate(parents):
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise SevcError(f"--set {pair} conflicts with --set {'.'.join(parents[:depth + 1])}=...: an entry is "
                                "either a value or holds nested entries")
        if leaf in node and isinstance(node[leaf], dict) != isinstance(value, dict):
            raise SevcError(f"--set {pair} conflicts with another --set of {key}.*")
        node[leaf] = value
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Train one stage as the command line says; prints the last logged numbers."""
    args = parse_args(argv)
    changes = overrides(args.set)
    config = load_config(args.config, changes) if args.config else resume_config(args.output, changes)
    last = train(config, args.output, args.resume, args.overwrite, [args.config] if args.config else [])
    if last:
        print("last step: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()))
    return 0


def entry() -> int:
    """train.py's entry point: errors as one `error:` line and exit status 1."""
    return run(main)
