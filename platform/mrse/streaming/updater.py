"""Transform + write: fold validated events into the users' online profiles.

The same ``update_profile`` that builds training and evaluation profiles; state is read from
and written back to the feature store, so a restarted worker continues where the store is.
Idempotent by event id: each profile keeps the ids of its last ``window`` applied events, and
an event already among them changes nothing (redelivery after a crash, duplicate sends).

A bounded write-through cache of the profiles this worker wrote saves the store read for users
seen recently. It is only valid while this worker owns the users' partitions: the worker clears
it on every consumer-group rebalance.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mrse.features.catalog import CatalogFeatures
from mrse.features.profile import ProfileConfig, ProfileEvent, update_profile
from mrse.features.queries import profile_event
from mrse.features.store import ProfileStore, StoredProfile
from mrse.streaming.events import Event


@dataclass
class ApplyResult:
    applied: int = 0
    duplicates: int = 0
    users: int = 0


class ProfileUpdater:
    """Applies batches of events to the profiles in ``store``."""

    def __init__(
        self,
        store: ProfileStore,
        catalog: CatalogFeatures,
        profile: ProfileConfig,
        window: int = 1024,
        cache_users: int = 50_000,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.store = store
        self.catalog = catalog
        self.profile = profile
        self.window = window
        self.cache_users = cache_users
        self._cache: OrderedDict[str, StoredProfile] = OrderedDict()
        # items added to the catalog after this worker's snapshot: item id -> category
        self.added: dict[str, str] = {}

    def add_items(self, items: Mapping[str, str]) -> None:
        """Make items the catalog added since the snapshot known (item id -> category): their
        events fold in by id and category (what the late-fused profile reads); the pooled
        text and photo sums skip them until a snapshot with their vectors."""
        self.added.update(items)

    def knows(self, item_id: str) -> bool:
        return item_id in self.catalog.index or item_id in self.added

    def clear_cache(self) -> None:
        """Forget cached profiles (another worker may write them from now on)."""
        self._cache.clear()

    def _load(self, users: list[str]) -> dict[str, StoredProfile | None]:
        found: dict[str, StoredProfile | None] = {
            u: self._cache[u] for u in users if u in self._cache
        }
        missing = [u for u in users if u not in found]
        if missing:
            found.update(self.store.read(missing))
        return found

    def _remember(self, profiles: dict[str, StoredProfile]) -> None:
        for user, p in profiles.items():
            self._cache[user] = p
            self._cache.move_to_end(user)
        while len(self._cache) > self.cache_users:
            self._cache.popitem(last=False)

    def apply(self, events: Sequence[Event]) -> ApplyResult:
        """Fold ``events`` (in the given order) into their users' profiles and write them."""
        if not events:
            return ApplyResult()
        users = list(dict.fromkeys(e.user_id for e in events))
        stored = self._load(users)
        current: dict[str, StoredProfile] = {}
        seen: dict[str, set[str]] = {}
        result = ApplyResult(users=len(users))
        for e in events:
            p = (
                current.get(e.user_id)
                or stored.get(e.user_id)
                or StoredProfile(self.catalog.cold_profile())
            )
            ids = seen.setdefault(e.user_id, set(p.applied_event_ids))
            if e.event_id in ids:
                result.duplicates += 1
                continue
            row = self.catalog.index.get(e.item_id)
            event = (
                profile_event(self.catalog, row, e.ts)
                if row is not None
                else ProfileEvent(e.item_id, e.ts, self.added.get(e.item_id, ""), None, None)
            )
            state = update_profile(p.state, event, self.profile)
            applied = (p.applied_event_ids + [e.event_id])[-self.window :]
            ids.add(e.event_id)
            if len(ids) > 2 * self.window:  # keep the lookup set bounded too
                seen[e.user_id] = ids = set(applied)
            current[e.user_id] = StoredProfile(state, applied)
            result.applied += 1
        self.store.write(current)
        self._remember(current)
        return result
