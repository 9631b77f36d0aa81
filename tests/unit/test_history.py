from __future__ import annotations

import numpy as np
import pandas as pd

from mrse.data.history import HistoryIndex


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", None, "u1"],
            "item_id": ["a", "b", "c", "d", "e", "f"],
            "ts": pd.to_datetime(
                ["2020-01-01", "2020-01-05", "2020-01-10", "2020-01-02", "2020-01-01", None]
            ),
            "event": ["purchase"] * 6,
            "query": [None] * 6,
        }
    )


def test_history_is_strictly_before_the_cut_off():
    idx = HistoryIndex(_events())
    h = idx.before("u1", pd.Timestamp("2020-01-05"))
    assert list(h.item_ids) == ["a"]  # the event at exactly ts is not history
    h = idx.before("u1", pd.Timestamp("2020-01-06"))
    assert list(h.item_ids) == ["a", "b"]
    assert np.all(h.ts[:-1] <= h.ts[1:])


def test_events_without_time_never_enter_a_history():
    idx = HistoryIndex(_events())
    assert "f" not in idx.before("u1", pd.Timestamp("2030-01-01")).item_ids


def test_unknown_user_anonymous_or_untimed_query_has_empty_history():
    idx = HistoryIndex(_events())
    assert len(idx.before("nobody", pd.Timestamp("2030-01-01"))) == 0
    assert len(idx.before(None, pd.Timestamp("2030-01-01"))) == 0
    assert len(idx.before("u1", None)) == 0
    assert len(idx.before("u1", pd.NaT)) == 0
