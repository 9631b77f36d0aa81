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
