"""Demo step: a shopper's home feed, changed live by their clicks.

The shopper with the longest history asks for their feed (``Recommend``, the MRSE arm); then
they click a few items of one kind they have never bought, each a click event on the
clickstream topic; the stream worker folds them into their profile in the feature store, and
the feed is asked again until it reflects them. The time from the first click's produce to the
first feed that changed is what the shopper would wait; the share of that kind in the feed,
before and after, is what changed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc

from mrse.data.dataset import Dataset
from mrse.jobs.bench_feed import until_changed
from mrse.kafka_client import client_options
from mrse.streaming.events import Event
from mrse.streaming.topics import CLICKS
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedShow:
    """One shopper's feed before and after a few clicks."""

    user_id: str
    kind: str  # the category clicked
    clicked: tuple[str, ...]
    before: tuple[str, ...]
    after: tuple[str, ...]
    seconds: float | None  # first click produced -> first changed feed (None: never changed)
    share_before: float  # of the feed, the share in ``kind``
    share_after: float
    personalized: bool
    requests: int  # Recommend calls made (each an exposure of the QA override)


def show_feed(
    channel: grpc.Channel,
    bootstrap: str,
    dataset: Dataset,
    experiment: str,
    clicks: int = 3,
    k: int = 10,
    timeout_s: float = 10.0,
) -> FeedShow:
    """The feed of the shopper with the most events, then ``clicks`` clicks on items of the
    catalog's most common (named) category they have not bought, then the feed again (see the
    module docstring)."""
    from kafka import KafkaProducer

    stub = search_pb2_grpc.SearchServiceStub(channel)
    ev = dataset.events[dataset.events["user_id"].notna()]
    user = str(ev["user_id"].value_counts().index[0])
    items = dataset.items
    category_of = dict(zip(items["item_id"], items["category"], strict=True))
    bought = set(ev.loc[ev["user_id"] == user, "item_id"])
    named = items[items["category"].fillna("").str.strip() != ""]  # a kind has a name
    named = named if len(named) else items
    kinds = named[~named["category"].isin({category_of.get(i) for i in bought})]["category"]
    kind = str((kinds if len(kinds) else named["category"]).value_counts().index[0])
    picks = items[(items["category"] == kind) & ~items["item_id"].isin(bought)]
    clicked = tuple(picks["item_id"].head(clicks))

    calls = 0

    def feed() -> search_pb2.SearchResponse:
        nonlocal calls
        calls += 1
        req = search_pb2.RecommendRequest(user_id=user, k=k, experiment=experiment,
                                          arm_override="mrse")  # fmt: skip
        return stub.Recommend(req, timeout=30)

    first = feed()
    before = tuple(r.item_id for r in first.results)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                             **client_options())  # fmt: skip
    try:
        start = time.perf_counter()
        for n, item in enumerate(clicked):
            click = Event(f"demo-feed-click:{n}", user, item, "click", time.time(), None)
            producer.send(CLICKS, key=user.encode(), value=click.to_json())
        producer.flush()
    finally:
        producer.close()
    seconds, after = until_changed(lambda: tuple(r.item_id for r in feed().results), before,
                                   start, timeout_s, poll_s=0.02)  # fmt: skip

    def share(ids: tuple[str, ...]) -> float:
        return sum(category_of.get(i) == kind for i in ids) / max(len(ids), 1)

    return FeedShow(user, kind, clicked, before, after, seconds, share(before), share(after),
                    first.personalized, calls)  # fmt: skip


def format_feed(show: FeedShow) -> str:
    """The console lines of the feed step."""
    waited = "never changed" if show.seconds is None else f"{show.seconds * 1000:.0f} ms"
    return (
        f"\nhome feed of shopper {show.user_id[:12]} (personalized: {show.personalized}):\n"
        f"  before: {show.share_before:.0%} of the first {len(show.before)} are {show.kind!r}\n"
        f"  after {len(show.clicked)} clicks on {show.kind!r} items: {show.share_after:.0%} "
        f"(the feed changed {waited} after the clicks were produced)"
    )
