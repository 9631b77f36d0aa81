from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchrec import KeyedJaggedTensor

from mrse.features.inputs import ItemInputs, QueryInputs
from mrse.models.config import ModelConfig
from mrse.models.towers import typed_intent
from mrse.models.two_tower import MRSEModel, explain

CFG = ModelConfig(
    dim=16,
    identity_dim=4,
    hidden=32,
    sparse_dim=8,
    ngram_buckets=512,
    category_buckets=64,
    brand_buckets=64,
    recent_items=3,
    dropout=0.0,
    text_dropout=0.0,  # the tests that train turn modality dropout on themselves
    photo_dropout=0.0,
)


def _items(has_text, has_image, with_ngrams=None):
    n = len(has_text)
    with_ngrams = has_text if with_ngrams is None else with_ngrams
    g = torch.Generator().manual_seed(0)
    ng_len = [3 if t else 0 for t in with_ngrams]
    sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=["item_ngrams", "item_category", "item_brand"],
        values=torch.randint(1, 64, (sum(ng_len) + 2 * n,), generator=g),
        lengths=torch.tensor(ng_len + [1] * n + [1] * n),
    )
    ht, hi = torch.tensor(has_text), torch.tensor(has_image)
    return ItemInputs(
        text=torch.randn(n, 384, generator=g) * ht[:, None],
        has_text=ht,
        image=torch.randn(n, 1280, generator=g) * hi[:, None],
        has_image=hi,
        sparse=sparse,
        identity=torch.arange(n, dtype=torch.int64) * 7919,
    )


def _queries(b, has_history):
    g = torch.Generator().manual_seed(1)
    sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=["query_ngrams", "profile_categories"],
        values=torch.randint(1, 64, (2 * b + b,), generator=g),
        lengths=torch.tensor([2] * b + [1] * b),
    )
    hh = torch.tensor(has_history)
    recent = torch.tensor([[0, -1, -1] if h else [-1, -1, -1] for h in has_history])
    return QueryInputs(
        text=torch.randn(b, 384, generator=g),
        sparse=sparse,
        profile_text=torch.randn(b, 384, generator=g) * hh[:, None],
        profile_image=torch.randn(b, 1280, generator=g) * hh[:, None],
        modality=torch.rand(b, 4, generator=g),
        has_history=hh,
        recent=recent,
    )


def test_gate_masks_missing_modalities_and_outputs_unit_vectors():
    model = MRSEModel(CFG).eval()
    # text+photo, image-only, text-only
    out = model.encode_items(_items([True, False, True], [True, True, False]))
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(3))
    gates = out.gates
    text, ngram, image, _, identity = range(5)
    assert gates[1, text] == 0 and gates[1, ngram] == 0 and gates[1, image] > 0
    assert gates[2, image] == 0 and gates[2, text] > 0
    # the learnt experts share sqrt(1 - s^2) of the vector, the product identity the rest
    share = torch.sigmoid(model.item_tower.identity_logit).detach()
    torch.testing.assert_close(gates[:, :4].sum(dim=1), torch.sqrt(1 - share**2).expand(3))
    torch.testing.assert_close(out.embedding[:, -4:].norm(dim=1), share.expand(3))
    assert (gates[:, identity] > 0).all()
    plain = MRSEModel(replace(CFG, identity_dim=0)).eval()
    assert not plain.config.uses_identity
    out = plain.encode_items(_items([True, False, True], [True, True, False]))
    torch.testing.assert_close(out.gates.sum(dim=1), torch.ones(3))


def test_image_only_item_does_not_depend_on_garbage_text_inputs():
    model = MRSEModel(CFG).eval()
    a = _items([False], [True])
    b = _items([False], [True])
    b.text = torch.randn(1, 384) * 100  # junk in a masked slot must not leak
    torch.testing.assert_close(model.encode_items(a).embedding, model.encode_items(b).embedding)


def test_item_with_nothing_gets_zero_vector_not_nan():
    model = MRSEModel(CFG).eval()
    items = _items([False], [False])
    items.sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=["item_ngrams", "item_category", "item_brand"],
        values=torch.zeros(0, dtype=torch.long),
        lengths=torch.tensor([0, 0, 0]),
    )
    out = model.encode_items(items).embedding
    assert torch.isfinite(out).all()


def test_cold_start_query_masks_profile_expert():
    model = MRSEModel(CFG).eval()
    items = model.encode_items(_items([True, True], [True, True])).embedding
    out = model.encode_queries(_queries(2, [True, False]), items)
    assert out.gates[0, 2] > 0 and out.gates[1, 2] == 0
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))


def test_text_tower_ignores_user_and_photos():
    cfg = ModelConfig(**{**CFG.to_dict(), "use_image": False, "use_profile": False})
    model = MRSEModel(cfg).eval()
    items = _items([True], [True])
    e1 = model.encode_items(items).embedding
    items.image = torch.randn(1, 1280)
    torch.testing.assert_close(e1, model.encode_items(items).embedding)
    q = _queries(1, [True])
    a = model.encode_queries(q, e1).embedding
    q.profile_image, q.modality = torch.randn(1, 1280), torch.rand(1, 4)
    torch.testing.assert_close(a, model.encode_queries(q, e1).embedding)


def test_ngram_query_path_never_reads_the_text_vector():
    model = MRSEModel(ModelConfig(**{**CFG.to_dict(), "use_query_text": False})).eval()
    items = model.encode_items(_items([True, True], [True, True])).embedding
    q = _queries(2, [True, False])
    a = model.encode_queries(q, items).embedding
    q.text = torch.randn(2, 384)  # any text vector (or none at all): the same query embedding
    torch.testing.assert_close(a, model.encode_queries(q, items).embedding)
    q.sparse = KeyedJaggedTensor.from_lengths_sync(  # other query words: another embedding
        keys=["query_ngrams", "profile_categories"],
        values=torch.tensor([300, 301, 302, 303, 1, 2]),
        lengths=torch.tensor([2, 2, 1, 1]),
    )
    assert not torch.allclose(a, model.encode_queries(q, items).embedding)


def test_explanations_sum_to_the_score():
    model = MRSEModel(CFG).eval()
    items_out = model.encode_items(_items([True, False], [True, True]))
    q_out = model.encode_queries(_queries(2, [True, True]), items_out.embedding)
    parts = explain(q_out, items_out)
    score = (q_out.embedding * items_out.embedding).sum(1)
    torch.testing.assert_close(parts["text"] + parts["image"] + parts["profile"], score)
    pair_sum = sum(v for k, v in parts.items() if k.startswith("q:"))
    torch.testing.assert_close(pair_sum, score)
    concat = MRSEModel(ModelConfig(**{**CFG.to_dict(), "fusion": "concat"})).eval()
    it = concat.encode_items(_items([True], [True]))
    assert explain(concat.encode_queries(_queries(1, [True]), it.embedding), it) is None


def test_config_validation():
    with pytest.raises(ValueError, match="fusion"):
        ModelConfig(fusion="sum")
    with pytest.raises(ValueError, match="profile_fusion"):
        ModelConfig(profile_fusion="early")
    with pytest.raises(ValueError):
        ModelConfig(dim=2)
    assert np.isclose(ModelConfig().dropout, 0.1)


def test_late_fusion_adds_the_profile_after_the_typed_query():
    model = MRSEModel(ModelConfig(**{**CFG.to_dict(), "profile_fusion": "late"})).eval()
    items_out = model.encode_items(_items([True, False, True], [True, True, False]))
    q_out = model.encode_queries(_queries(2, [True, False]), items_out.embedding)
    torch.testing.assert_close(q_out.embedding.norm(dim=1), torch.ones(2))
    # with history: typed part + w * profile, w > 0; cold start: the typed part alone
    assert q_out.gates[0, 2] > 0 and q_out.gates[1, 2] == 0
    torch.testing.assert_close(q_out.embedding[1], typed_intent(q_out)[1])
    assert not torch.allclose(q_out.embedding[0], typed_intent(q_out)[0])
    # scores still split exactly into expert contributions
    pair = q_out.rows([0, 0, 0])
    parts = explain(pair, items_out)
    score = (pair.embedding * items_out.embedding).sum(1)
    torch.testing.assert_close(parts["text"] + parts["image"] + parts["profile"], score)


@pytest.mark.parametrize("fusion", ["late", "gate"])
def test_typed_intent_ignores_the_profile(fusion):
    model = MRSEModel(ModelConfig(**{**CFG.to_dict(), "profile_fusion": fusion})).eval()
    items = model.encode_items(_items([True, True], [True, True])).embedding
    q = _queries(2, [True, True])
    a = typed_intent(model.encode_queries(q, items))
    q.profile_image = torch.randn(2, 1280) * 10  # another shopper, the same words
    q.recent = torch.tensor([[1, 0, -1], [1, -1, -1]])
    out = model.encode_queries(q, items)
    torch.testing.assert_close(a, typed_intent(out))
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2))


def test_late_profile_prefers_items_like_the_recent_ones_that_match_the_query():
    """With late fusion the profile term is the recent items attended by what was typed: of two
    items equally close to the typed query, the one nearer a recent purchase scores higher; a
    shopper without history gets the typed vector unchanged."""
    model = MRSEModel(ModelConfig(**{**CFG.to_dict(), "profile_fusion": "late"})).eval()
    q = _queries(2, [True, False])
    q.text[1] = q.text[0]  # the same words from both shoppers
    q.sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=["query_ngrams", "profile_categories"],
        values=torch.tensor([5, 6, 5, 6, 1]),
        lengths=torch.tensor([2, 2, 1, 0]),
    )
    before = typed_intent(model.encode_queries(q, torch.zeros(0, CFG.dim)))
    typed = before[0]  # (D,)
    side = torch.randn(CFG.dim)
    side = F.normalize(side - (side @ typed) * typed, dim=0)  # orthogonal to what was typed
    a = F.normalize(typed + 0.5 * side, dim=0)
    b = F.normalize(typed - 0.5 * side, dim=0)  # as close to the query as a
    bought = F.normalize(typed + 2.0 * side, dim=0)  # the shopper bought something a-like
    index = torch.stack([bought, bought])  # row 0 is the recent item of shopper 0
    out = model.encode_queries(q, index).embedding
    assert out[0] @ a > out[0] @ b
    torch.testing.assert_close(out[1], before[1])


def test_photo_dropout_hides_photos_of_items_with_text_in_training_only():
    model = MRSEModel(ModelConfig(**{**CFG.to_dict(), "photo_dropout": 0.999}))
    items = _items([True, False], [True, True])  # text+photo, image-only
    torch.manual_seed(0)
    gates = model.train().encode_items(items).gates
    image = 2
    assert gates[0, image] == 0  # hidden: the item still has its text
    assert gates[1, image] > 0  # an image-only item always keeps its photo
    assert model.eval().encode_items(items).gates[0, image] > 0


def test_text_dropout_hides_text_of_items_with_a_photo_never_both_and_only_in_training():
    model = MRSEModel(ModelConfig(**{**CFG.to_dict(), "text_dropout": 0.999}))  # photo: 0
    items = _items([True, True, False], [True, False, True])  # both, text-only, image-only
    torch.manual_seed(0)
    out = model.train().encode_items(items)
    text, ngram, image = 0, 1, 2
    assert out.gates[0, text] == 0 and out.gates[0, ngram] == 0 and out.gates[0, image] > 0
    assert out.gates[1, text] > 0  # a text-only item always keeps its text
    assert model.eval().encode_items(items).gates[0, text] > 0
    with pytest.raises(ValueError, match="an item keeps one"):
        ModelConfig(text_dropout=0.6, photo_dropout=0.4)


def test_explicit_hide_masks_encode_an_item_as_if_it_lacked_that_modality():
    """Hiding the text (or photo) of an item in the tower gives what an item without it
    gives: the modality distillation's partial views are real image-only / text-only items."""
    model = MRSEModel(replace(CFG, identity_dim=0)).eval()
    full = _items([True, True], [True, True])
    on, off = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    photo_only = model.encode_items(full, hide=(on, off)).embedding
    by_key = full.sparse.to_dict()  # the same category and brand ids, no n-grams
    no_ngrams = KeyedJaggedTensor.from_lengths_sync(
        keys=["item_ngrams", "item_category", "item_brand"],
        values=torch.cat([by_key["item_category"].values(), by_key["item_brand"].values()]),
        lengths=torch.tensor([0, 0, 1, 1, 1, 1]),
    )
    no_text = replace(full, has_text=off, text=full.text * 0, sparse=no_ngrams)
    torch.testing.assert_close(photo_only, model.encode_items(no_text).embedding)
    text_only = model.encode_items(full, hide=(off, on)).embedding
    no_photo = replace(full, has_image=off, image=full.image * 0)
    torch.testing.assert_close(text_only, model.encode_items(no_photo).embedding)
    assert not torch.allclose(photo_only, model.encode_items(full).embedding)
