"""Train or fine-tune one SEVC stage: python train.py --config train_configs/base.json -o runs/base (see README.md)."""
import sys

from sevc.cli.launch import train

if __name__ == "__main__":
    sys.exit(train())
