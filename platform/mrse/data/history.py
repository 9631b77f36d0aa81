"""Point-in-time user histories: what a user had done strictly before a moment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class UserHistory:
    """A user's events before a cut-off, oldest first.

    Attributes:
        item_ids: (H,) item ids.
        ts: (H,) event times (``datetime64[ns]``).
        event: (H,) event types.
    """

    item_ids: np.ndarray
    ts: np.ndarray
    event: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)


EMPTY_HISTORY = UserHistory(
    item_ids=np.array([], dtype=object),
    ts=np.array([], dtype="datetime64[ns]"),
    event=np.array([], dtype=object),
)


class HistoryIndex:
    """Per-user event lists sorted by time, answering "history before ts" in O(log H).

    Events without a user or without a timestamp are never part of a history: with no time we
    cannot prove they happened before the query, and leaking the future is worse than missing
    a past event.
    """

    def __init__(self, events: pd.DataFrame) -> None:
        known = events[events["user_id"].notna() & events["ts"].notna()]
        known = known.sort_values(["user_id", "ts"], kind="stable")
        self._by_user: dict[str, UserHistory] = {}
        for user_id, group in known.groupby("user_id", sort=False):
            self._by_user[str(user_id)] = UserHistory(
                item_ids=group["item_id"].to_numpy(dtype=object),
                ts=group["ts"].to_numpy(dtype="datetime64[ns]"),
                event=group["event"].to_numpy(dtype=object),
            )

    def before(self, user_id: str | None, ts: pd.Timestamp | np.datetime64 | None) -> UserHistory:
        """Events of ``user_id`` strictly before ``ts``.

        A query without a time gets no history (its cut-off is unknown); an unknown user gets
        an empty history.
        """
        if user_id is None or ts is None or pd.isna(ts):
            return EMPTY_HISTORY
        full = self._by_user.get(user_id)
        if full is None:
            return EMPTY_HISTORY
        cut = int(np.searchsorted(full.ts, np.datetime64(pd.Timestamp(ts), "ns"), side="left"))
        return UserHistory(item_ids=full.item_ids[:cut], ts=full.ts[:cut], event=full.event[:cut])
