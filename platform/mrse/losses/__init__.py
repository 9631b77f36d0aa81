"""Training losses. Each concept one module with a pure ``compute_loss_from_embeddings``."""
