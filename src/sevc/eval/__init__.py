"""Evaluation: quality metrics, test configurations and records (test.py), BD-rate reports."""
