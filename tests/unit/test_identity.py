"""Product identity: keys shared by a product's variants, and their fixed vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mrse.data.products import product_key
from mrse.features.catalog import catalog_features, hide_modality
from mrse.features.identity import identity_hashes, identity_vectors
from mrse.models.config import ModelConfig


def test_variants_share_a_key_and_items_without_text_are_their_own_product():
    a = product_key("0554450001", "Julia RW Skinny", "High-waisted  jeans.")
    b = product_key("0554450002", "julia rw skinny ", "High-waisted jeans.")
    assert a == b  # same text, other colour: one product (case and spacing ignored)
    assert product_key("1", "Julia RW Skinny", "Low-waisted jeans.") != a
    assert product_key("x1", "", "") == "id:x1"
    assert product_key("x1", None, None) != product_key("x2", None, None)
    assert product_key("x1", "", "only a description") != "id:x1"


def test_identity_vectors_are_unit_equal_for_equal_keys_and_nearly_orthogonal_otherwise():
    keys = [f"text:product {i}" for i in range(2000)] + ["text:product 7"]
    h = identity_hashes(keys)
    assert h.dtype == np.uint64 and h[7] == h[-1]
    v = identity_vectors(h, 32)
    assert v.shape == (2001, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(v[7], v[-1])
    dots = v[:2000] @ v[:2000].T
    off = dots[~np.eye(2000, dtype=bool)]
    # independent +-1 signs: mean 0, standard deviation 1/sqrt(32)
    assert abs(off.mean()) < 0.01 and abs(off.std() - 32**-0.5) < 0.01
    # more than 64 dimensions draw more than one word of bits, all of them used
    wide = identity_vectors(h[:500], 100)
    assert wide.shape == (500, 100)
    assert abs((wide[:, 64:] > 0).mean() - 0.5) < 0.02
    assert not np.array_equal(wide[:, :36], wide[:, 64:100])


def test_identity_is_the_same_in_every_process_and_release():
    # fixed values: an index built by one process (or release) is searched by another, and
    # Python's own hash() is salted per process
    assert int(identity_hashes(["id:x"])[0]) == 14754924912621511000
    v = identity_vectors(identity_hashes(["text:a | b"]), 8)[0] * np.sqrt(8)
    assert np.round(v).astype(int).tolist() == [1, 1, 1, -1, -1, -1, 1, 1]


def _catalog():
    items = pd.DataFrame(
        {
            "item_id": ["a1", "a2", "b1", "p1"],
            "title": ["Tee", "Tee", "Vest", ""],
            "description": ["Soft.", "Soft.", "Soft.", ""],
            "category": ["Tops", "Tops", "Tops", ""],
            "brand": ["", "", "", ""],
        }
    )
    n = len(items)
    has_text = np.array([True, True, True, False])
    return catalog_features(
        items,
        np.zeros((n, 4), np.float32),
        has_text,
        np.zeros((n, 6), np.float32),
        np.ones(n, bool),
        ModelConfig(dim=16),
    )


def test_catalog_gives_variants_one_identity_and_hidden_text_makes_each_item_its_own():
    cat = _catalog()
    assert cat.identity[0] == cat.identity[1] != cat.identity[2] != cat.identity[3]
    assert cat.inputs(np.array([1, 0])).identity.tolist() == [
        int(x) for x in cat.identity[[1, 0]].view(np.int64)
    ]
    hidden = hide_modality(cat, "text", np.array([1]))
    assert hidden.identity[1] != hidden.identity[0]  # its text, so its product, is unknown
    np.testing.assert_array_equal(hidden.identity[[0, 2, 3]], cat.identity[[0, 2, 3]])
    assert hide_modality(cat, "photo").identity is cat.identity
