"""NumPy-only core: models, training, sampling, evaluation and checkpoints (no web imports)."""
