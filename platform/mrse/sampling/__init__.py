"""Negative sampling: random catalog negatives with their log-Q, hard negatives mined from an index."""
