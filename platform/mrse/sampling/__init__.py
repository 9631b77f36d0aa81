"""Negative sampling: random catalog negatives with log-Q, hard negatives mined from an index."""
