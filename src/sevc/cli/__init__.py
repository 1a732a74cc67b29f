"""Command-line tools: test.py (RD evaluation), encoder.py, decoder.py, BD-rate reports, the demo."""
