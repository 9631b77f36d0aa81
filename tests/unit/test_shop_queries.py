"""Shop queries generated from item text: classes, judgements, the held-out split, training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrse.data.products import normal_title
from mrse.data.shop_queries import (
    QUERY_CLASSES,
    generate_queries,
    in_split,
    misspell,
    typo_query,
)
from mrse.training.examples import Examples, shop_examples, split_examples


def _items(n=300, brands=("Nike", "Puma", "Adidas")):
    rng = np.random.default_rng(0)
    names = ["blair", "lola", "tora", "jerry", "dana", "zazu", "carey", "ronny", "lily", "tree"]
    kinds = ["hoop", "jeans", "shirt", "dress", "jacket", "tights"]
    rows = []
    for i in range(n):
        title = f"{names[i % 10]} {rng.choice(['soft', 'slim', 'wide'])} {kinds[i % 6]}"
        desc = " ".join(rng.choice(["fitted", "cotton", "jersey", "with", "a", "wide", "waist",
                                    "pockets", "in", "denim"], size=12))  # fmt: skip
        rows.append((f"{i:04d}", title if i % 7 else "", desc if i % 7 else "",
                     brands[i % len(brands)], "Tops", 1.0, ""))  # fmt: skip
    return pd.DataFrame(rows, columns=["item_id", "title", "description", "brand", "category",
                                       "price", "image"])  # fmt: skip


def test_every_class_is_generated_with_judgements_that_follow_its_rule():
    items = _items()
    mix = generate_queries(items, per_class=20, seed=1)
    assert set(mix.queries["cls"]) == set(QUERY_CLASSES)
    assert (mix.queries.groupby("cls").size() <= 20).all()
    title = {i: normal_title(t) for i, t in zip(items["item_id"], items["title"], strict=True)}
    rel = mix.qrels.groupby("qid")["item_id"].agg(set)
    for qid, q, cls in mix.queries[["qid", "query", "cls"]].itertuples(index=False):
        judged = rel[qid]
        assert judged, (cls, q)
        if cls == "title":
            assert judged == {i for i, t in title.items() if t == q}
        elif cls == "fragment":
            assert 2 <= len(q.split()) < 3 and all(f" {q} " in f" {title[i]} " for i in judged)
        elif cls == "typo":
            (t,) = {title[i] for i in judged}
            assert q != t and len(q.split()) == len(t.split())
        elif cls == "brand-type":
            brand, word = q.rsplit(" ", 1)
            assert all(word in title[i].split() for i in judged)
    again = generate_queries(items, per_class=20, seed=1)
    pd.testing.assert_frame_equal(mix.queries, again.queries)  # the same inputs, same queries


def test_a_catalog_with_one_brand_has_no_brand_type_queries_and_nothing_crashes_empty():
    mix = generate_queries(_items(brands=("H&M",)), per_class=10)
    assert "brand-type" not in set(mix.queries["cls"])
    empty = _items(7)  # every 7th item has no text: item 0 only... and 6 with text
    assert len(generate_queries(empty.iloc[:1], per_class=10)) == 0
    with pytest.raises(ValueError, match="unknown query class"):
        generate_queries(empty, classes=("title", "colour"))


def test_evaluation_and_training_queries_never_share_a_title():
    items = _items(600)
    ev = generate_queries(items, per_class=None, split="eval", classes=("title", "typo"))
    tr = generate_queries(items, per_class=None, split="train", classes=("title", "fragment"))
    eval_titles = set(ev.queries.loc[ev.queries["cls"] == "title", "query"])
    assert eval_titles and not eval_titles & set(tr.queries["query"])
    assert all(in_split(t, "eval") for t in eval_titles)
    assert sum(in_split(f"t{i}", "eval") for i in range(5000)) == pytest.approx(1000, rel=0.1)


def test_misspellings_are_one_typing_error_and_keep_the_first_letter():
    rng = np.random.default_rng(0)
    for word in ["blair", "jacket", "trousers", "hoop"] * 25:
        typo = misspell(word, rng)
        assert typo != word and typo[0] == word[0] and abs(len(typo) - len(word)) <= 1
    assert misspell("top", rng) == "top"
    assert typo_query(["a", "b"], rng) is None
    assert typo_query(["cool", "blair", "hoop", "earrings"], rng).split()[0] == "cool"


def _log_examples(n=40):
    return Examples(
        texts=np.array([f"black top {i % 5}" for i in range(n)], dtype=object),
        user_ids=np.array([f"u{i % 8}" for i in range(n)], dtype=object),
        ts=np.array(
            [np.datetime64("2020-01-01") + np.timedelta64(i, "D") for i in range(n)],
            dtype="datetime64[ns]",
        ),  # fmt: skip
        item_rows=np.arange(n, dtype=np.int64) % 30,
    )


def test_generated_examples_train_and_never_validate(tmp_path):
    from mrse.data.dataset import Dataset, ValidationReport

    items = _items()
    ds = Dataset(tmp_path, items, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), None,
                 ValidationReport())  # fmt: skip
    log = _log_examples()
    ex = shop_examples(ds, log, ratio=1.5, classes=QUERY_CLASSES, seed=0)
    assert len(ex) == 40 + 60 and ex.generated.sum() == 60 and not ex.generated[:40].any()
    assert all(u is None for u in ex.user_ids[40:]) and np.isnat(ex.ts[40:]).all()
    for text, row in zip(ex.texts[40:], ex.item_rows[40:], strict=True):
        assert row in ex.relevant[text]  # every positive is among its query's relevant items
    train, val = split_examples(ex, 0.2, seed=0)
    assert set(range(40, 100)) <= set(train) and set(val) < set(range(40))
    assert (train, val) != () and set(split_examples(log, 0.2, seed=0)[1]) == set(val)
    assert shop_examples(ds, log, ratio=0.0, classes=QUERY_CLASSES, seed=0) is log
