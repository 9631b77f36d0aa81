"""Training: configs, examples and splits, the loop, checkpoints."""
