"""The sample clip bundled with sevc (see `sevc/data/README.md`): the demo's input."""
from pathlib import Path

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "data" / "carphone_176x144"
SAMPLE_SIZE = (176, 144)  # width, height
