"""Which product an item is: a key shared by the variants of one product, and its fixed vector.

Shoppers buy the same product again, or the same product in another colour (on hm, 8% of the
test targets; see docs/benchmarks.md "Personalisation"). Nothing in an item's learnt embedding
says "this exact product": items of one colour and type sit close together whatever they are.
The identity vector does: a pseudo-random +-1/sqrt(D) vector drawn from a hash of the item's
product key, so two items share it exactly when they are variants of one product and are
nearly orthogonal otherwise (dot product ~ N(0, 1/D)). It has no parameters, so an item added to
a live catalog has its identity at once.

The product key (``mrse.data.products.product_key``) is the item's text: the variants of one
product share it and differ in photo and colour. An item without text is its own product.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def identity_hashes(keys: Iterable[str]) -> np.ndarray:
    """Product keys -> (N,) uint64 hashes (stable across processes and machines)."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little")
            for k in keys
        ),
        dtype=np.uint64,
    )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, element-wise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def identity_vectors(hashes: np.ndarray, dim: int) -> np.ndarray:
    """(N,) uint64 identity hashes -> (N, dim) float32 unit vectors of +-1/sqrt(dim).

    Equal hashes give equal vectors; different ones nearly orthogonal ones."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    blocks = -(-dim // 64)
    with np.errstate(over="ignore"):
        words = np.stack(
            [_splitmix64(hashes + np.uint64(b) * _GOLDEN) for b in range(blocks)], axis=1
        )  # (N, blocks)
    bits = (words[:, :, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    signs = bits.reshape(len(hashes), blocks * 64)[:, :dim].astype(np.float32) * 2.0 - 1.0
    return signs / np.float32(np.sqrt(dim))
