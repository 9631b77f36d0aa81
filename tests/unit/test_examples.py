from __future__ import annotations

import numpy as np

from mrse.training.examples import Examples, split_examples, validation_qrels


def _personal(n_users=40, per_user=5):
    users, ts, texts, rows = [], [], [], []
    for u in range(n_users):
        for j in range(per_user):
            users.append(f"u{u}")
            ts.append(np.datetime64("2020-01-01") + np.timedelta64(j // 2, "D"))
            texts.append(f"q{j}")
            rows.append(u * per_user + j)
    return Examples(
        texts=np.array(texts, dtype=object),
        user_ids=np.array(users, dtype=object),
        ts=np.array(ts, dtype="datetime64[ns]"),
        item_rows=np.array(rows),
    )


def test_personal_split_holds_out_latest_baskets_only():
    ex = _personal()
    train, val = split_examples(ex, 0.1, seed=0)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == len(ex)
    assert 0.08 <= len(val) / len(ex) <= 0.2
    for i in val:
        same_user = ex.ts[ex.user_ids == ex.user_ids[i]]
        assert ex.ts[i] == same_user.max()  # only the user's latest searches


def test_anonymous_split_holds_out_whole_query_strings():
    n = 200
    ex = Examples(
        texts=np.array([f"q{i % 25}" for i in range(n)], dtype=object),
        user_ids=np.array([None] * n, dtype=object),
        ts=np.array([np.datetime64("NaT")] * n, dtype="datetime64[ns]"),
        item_rows=np.arange(n),
    )
    train, val = split_examples(ex, 0.2, seed=1)
    assert set(ex.texts[train]).isdisjoint(ex.texts[val])
    reps, rels = validation_qrels(ex, val)
    assert len(reps) == len(set(ex.texts[val]))
    assert sum(len(r) for r in rels) == len(val)


def test_feed_examples_are_the_purchases_without_a_query_and_only_train(sample_hm):
    from mrse.data import load_dataset
    from mrse.features.queries import FEED_QUERY
    from mrse.training.examples import build_examples, next_item_examples

    ds = load_dataset(sample_hm)
    log = build_examples(ds)
    ev = ds.events
    bare = ev[ev["query"].isna() & ev["user_id"].notna() & ev["ts"].notna()]
    assert len(bare) > 0
    ex = next_item_examples(ds, log, ratio=1.0, seed=0)
    assert len(ex) == len(log) + len(bare)
    fed = slice(len(log), None)
    assert (ex.texts[fed] == FEED_QUERY).all() and ex.generated[fed].all()
    assert not ex.generated[: len(log)].any()
    assert all(u is not None for u in ex.user_ids[fed]) and not np.isnat(ex.ts[fed]).any()
    assert set(ex.item_rows[fed]) == {ds.item_index[i] for i in bare["item_id"]}
    assert len(next_item_examples(ds, log, ratio=0.5, seed=0)) == len(log) + round(len(bare) / 2)
    assert next_item_examples(ds, log, ratio=0.0, seed=0) is log
    _, val = split_examples(ex, 0.1, seed=0)
    assert (val < len(log)).all()  # validation stays the log's searches
