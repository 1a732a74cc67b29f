"""train.py: train or fine-tune one stage of SEVC (single process, or under torchrun)."""
from __future__ import annotations

import argparse
import json
from typing import Dict, List, Optional

from ..errors import SevcError
from ..training.trainer import load_config, train
from .common import run


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train one SEVC stage (see train_configs/ and README.md)")
    parser.add_argument("--config", required=True, help="stage configuration JSON")
    parser.add_argument("-o", "--output", required=True, help="output folder (weights, train state, log)")
    parser.add_argument("--resume", action="store_true", help="continue from the output folder's train state")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override configuration entries (repeatable); VALUE is JSON (or a string), "
                             "KEY may be nested with dots: data.root=/data/vimeo")
    return parser.parse_args(argv)


def overrides(pairs: List[str]) -> Dict:
    """{key: value} from KEY=VALUE strings, nested keys (a.b) as nested dicts."""
    result: Dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SevcError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")
        node = result
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Train one stage as the command line says; prints the last logged numbers."""
    args = parse_args(argv)
    config = load_config(args.config, overrides(args.set))
    last = train(config, args.output, args.resume)
    if last:
        print("last step: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()))
    return 0


def entry() -> int:
    """train.py's entry point: errors as one `error:` line and exit status 1."""
    return run(main)
