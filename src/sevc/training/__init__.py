"""Training and fine-tuning SEVC: data, the paper's losses (Eq. 4 and 5), stages, the loop."""
