from __future__ import annotations

import math

import numpy as np
import torch

from mrse.features.ngrams import hashed_id, ngram_ids, tokenize
from mrse.sampling.hard_negatives import ItemMemory, mine_hard_negatives
from mrse.sampling.negatives import popularity_log_q, uniform_negatives


def test_miner_returns_top_items_except_excluded():
    items = torch.eye(6)
    query = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    rows, valid = mine_hard_negatives(query, items, [{0, 2}], k=3, pool=6)
    assert rows.tolist() == [[1, 3, 4]] and valid.all()


def test_miner_pads_when_pool_runs_out():
    items = torch.eye(3)
    rows, valid = mine_hard_negatives(torch.ones(2, 3), items, [{0, 1}, set()], k=2, pool=3)
    assert rows[0].tolist() == [2, -1] and valid[0].tolist() == [True, False]
    assert valid[1].all()


def test_miner_maps_candidates_to_rows_and_picks_a_row_once():
    items = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.0]])
    rows_of = torch.tensor([7, 7, 3, 5])  # row 7 held twice (an older and a newer copy)
    rows, valid = mine_hard_negatives(torch.tensor([[1.0, 0.0]]), items, [{5}], 3, 4, rows_of)
    assert rows.tolist() == [[7, 3, -1]] and valid.tolist() == [[True, True, False]]


def test_miner_on_an_empty_memory_returns_nothing():
    rows, valid = mine_hard_negatives(torch.ones(2, 4), torch.zeros(0, 4), [set(), set()], 3)
    assert rows.shape == (2, 3) and not valid.any()


def test_item_memory_is_first_in_first_out():
    mem = ItemMemory(size=4, dim=2)
    assert len(mem) == 0 and mem.embeddings.shape == (0, 2)
    mem.push(torch.tensor([1, 2, 3]), torch.arange(6.0).reshape(3, 2))
    assert len(mem) == 3 and mem.rows.tolist() == [1, 2, 3]
    mem.push(torch.tensor([4, 5]), torch.full((2, 2), 9.0, requires_grad=True))
    assert len(mem) == 4  # row 1 (the oldest) was overwritten by row 5
    assert sorted(mem.rows.tolist()) == [2, 3, 4, 5]
    assert not mem.embeddings.requires_grad
    assert mem.embeddings[mem.rows == 5].tolist() == [[9.0, 9.0]]
    mem.push(torch.arange(10, 16), torch.arange(12.0).reshape(6, 2))  # more than it holds
    assert sorted(mem.rows.tolist()) == [12, 13, 14, 15]
    assert mem.embeddings[mem.rows == 15].tolist() == [[10.0, 11.0]]


def test_popularity_and_uniform_log_q():
    lq = popularity_log_q(np.array([0, 0, 0, 1]), 3, smoothing=1.0)
    np.testing.assert_allclose(lq.exp().numpy(), [4 / 7, 2 / 7, 1 / 7], rtol=1e-6)
    rows, lq = uniform_negatives(10, 5, torch.Generator().manual_seed(0))
    assert rows.shape == (5,) and bool((rows < 10).all())
    assert torch.allclose(lq, torch.full((5,), -math.log(10)))


def test_ngrams_are_stable_bounded_and_share_trigrams_across_typos():
    assert tokenize("Black V-neck T-shirt!") == ["black", "v", "neck", "t", "shirt"]
    a = ngram_ids("black tshirt", 1000)
    assert a == ngram_ids("black tshirt", 1000)  # no per-process hash salt
    assert all(1 <= x < 1000 for x in a)
    typo = set(ngram_ids("blak tshirt", 1000))
    assert len(typo & set(a)) >= 4
    assert hashed_id("", 64) == 0 and hashed_id("Shoes", 64) == hashed_id(" shoes ", 64)
    assert len(ngram_ids("word " * 200, 1 << 16, max_ngrams=96)) == 96
