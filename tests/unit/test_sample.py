from __future__ import annotations

from mrse.data import load_dataset
from mrse.data.history import HistoryIndex
from mrse.data.sample import SampleConfig, make_sample


def test_sample_is_self_consistent_and_keeps_targets(sample_hm, tmp_path):
    out = make_sample(SampleConfig(source=sample_hm, out=tmp_path / "s", queries=5, max_items=60))
    ds = load_dataset(out)  # validation: qrels/events only name kept items
    assert len(ds.items) <= 60
    assert 1 <= len(ds.queries) <= 5
    judged = ds.qrels_by_query
    for qid in ds.queries["qid"]:
        assert max(judged[qid].values()) == 2  # the bought item survived
    assert sum(1 for p in (out / "images").iterdir()) == (ds.items["image"] != "").sum()
    hist = HistoryIndex(ds.events)
    q = ds.queries.iloc[0]
    assert all(t < q["ts"].to_datetime64() for t in hist.before(q["user_id"], q["ts"]).ts)
