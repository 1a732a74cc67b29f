"""Train or fine-tune one SEVC stage: python train.py --config train_configs/base.json -o runs/base (see README.md)."""
import sys

from sevc.cli.train import entry

if __name__ == "__main__":
    sys.exit(entry())
