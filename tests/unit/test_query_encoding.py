from __future__ import annotations

import numpy as np
import pytest

from mrse.data import load_dataset
from mrse.data.dataset import load_query_log
from mrse.encoders.query_onnx import OnnxQueryEncoder
from mrse.serving.query_encoding import (
    QueryVectors,
    frequent_queries,
    normalise_query,
    query_encoder,
)


def test_int8_encoder_agrees_with_the_fp32_model(text_encoder):
    queries = ["black trousers", "Gold Earring", "light pink wired push-up bra", "a", "x " * 300]
    int8 = OnnxQueryEncoder().encode(queries)
    fp32 = text_encoder.encode(queries)
    assert int8.shape == fp32.shape == (len(queries), 384) and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert (int8 * fp32).sum(axis=1).min() > 0.995
    assert OnnxQueryEncoder().encode([]).shape == (0, 384)


class _Counting:
    """A real encoder that counts what it is asked to encode."""

    def __init__(self, encode) -> None:
        self.encode = encode
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.encode(texts)


def test_query_vectors_cache_batches_and_evicts():
    enc = _Counting(query_encoder("minilm-int8"))
    vectors = QueryVectors(enc, size=2)
    a = vectors("Black  Dress")
    assert np.array_equal(vectors("black dress"), a)  # normalised key: a hit
    assert (vectors.hits, vectors.misses) == (1, 1) and enc.calls == [["black dress"]]
    both = vectors.many(["black dress", "red top", "red top"])
    assert enc.calls[-1] == ["red top"]  # hits looked up, misses encoded once, in one batch
    assert np.array_equal(both[0], a) and np.array_equal(both[1], both[2])
    vectors("jeans")  # evicts the least recently used ("black dress")
    vectors("black dress")
    assert enc.calls[-1] == ["black dress"]
    uncached = QueryVectors(enc, size=0)
    uncached("jeans")
    uncached("jeans")
    assert enc.calls[-2:] == [["jeans"], ["jeans"]] and uncached.hits == 0


def test_warm_cache_holds_the_log_s_most_frequent_queries(sample_hm):
    dataset = load_dataset(sample_hm)
    top = frequent_queries(load_query_log(sample_hm), 5)
    counts = dataset.events["query"].dropna().map(normalise_query).value_counts()
    assert top[-1] == counts.index[0] and len(top) == 5  # most frequent last
    enc = _Counting(query_encoder("minilm-int8"))
    vectors = QueryVectors(enc, size=3)
    assert vectors.warm(top) == 3  # only the 3 most frequent fit
    enc.calls.clear()
    vectors(top[-1])
    assert enc.calls == [] and vectors.hits == 1
    with pytest.raises(ValueError, match="unknown query encoder"):
        query_encoder("bert")
