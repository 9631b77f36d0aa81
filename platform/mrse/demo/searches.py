"""Demo step: example searches through the gRPC API, both arms side by side, and the shopper's
simulated click that feeds the A/B report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mrse.features.store import ProfileStore
from mrse.kafka_client import client_options
from mrse.metrics.ranking import query_metrics
from mrse.streaming.events import Event
from mrse.streaming.topics import CLICKS
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shown:
    """One result as served: score and its per-modality explanation (they sum to the score)."""

    item_id: str
    score: float
    text: float
    image: float
    profile: float
    relevance: int  # from the judgements: 0 none, 1 relevant, 2 the item the shopper bought


@dataclass
class ArmResult:
    arm: str
    model_version: str
    personalized: bool
    degraded: bool
    latency_ms: float
    items: list[Shown]
    metrics: dict[str, float]


@dataclass
class Showcase:
    """One example query: the shopper, their online profile, and every arm's answer."""

    qid: str
    query: str
    user_id: str | None
    profile_events: int
    history: list[str]  # the newest items in the shopper's online profile, oldest first
    assigned_arm: str = ""
    clicked: str | None = None
    arms: dict[str, ArmResult] = field(default_factory=dict)


def _search(stub, query: str, user: str | None, k: int, rid: str, arm: str | None) -> tuple:
    req = search_pb2.SearchRequest(
        query=query, user_id=user or "", k=k, request_id=rid, arm_override=arm or ""
    )
    t = time.perf_counter()
    resp = stub.Search(req, timeout=30)
    return resp, (time.perf_counter() - t) * 1e3


def _arm_result(resp, latency_ms: float, rels: dict[str, int]) -> ArmResult:
    items = [
        Shown(
            r.item_id,
            r.score,
            r.explanation.text,
            r.explanation.image,
            r.explanation.profile,
            int(rels.get(r.item_id, 0)),
        )
        for r in resp.results
    ]
    m = query_metrics([i.item_id for i in items], rels)
    return ArmResult(
        resp.arm,
        resp.model_version,
        resp.personalized,
        resp.degraded,
        latency_ms,
        items,
        {key: m[key] for key in ("ndcg@10", "recall@10", "hr@10")},
    )


def run_searches(
    channel,
    queries: pd.DataFrame,
    qrels: dict[str, dict[str, int]],
    arms: tuple[str, ...],
    profiles: ProfileStore,
    bootstrap: str,
    k: int = 10,
) -> list[Showcase]:
    """For each query: one QA-override search per arm (for the side-by-side page), then the
    shopper's real, assigned-arm search; if it shows a relevant item, the shopper clicks the
    first one (a click event on the clickstream topic, which the A/B report joins)."""
    from kafka import KafkaProducer

    stub = search_pb2_grpc.SearchServiceStub(channel)
    users = [u for u in queries["user_id"] if isinstance(u, str)]
    stored = profiles.read(users, with_event_ids=False)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **client_options()
    )
    out: list[Showcase] = []
    try:
        rows = queries.itertuples(index=False)
        for row in tqdm(rows, total=len(queries), desc="example searches", unit="query"):
            user = row.user_id if isinstance(row.user_id, str) else None
            p = stored.get(user) if user else None
            show = Showcase(
                row.qid,
                row.query,
                user,
                p.state.count if p else 0,
                list(p.state.recent_items) if p else [],
            )
            rels = qrels.get(row.qid, {})
            # alternate which arm goes first: the first pays the query's text encoding, the
            # second finds it in the server's query cache
            order = arms if len(out) % 2 == 0 else arms[::-1]
            for arm in order:
                resp, ms = _search(stub, row.query, user, k, f"{row.qid}:qa:{arm}", arm)
                show.arms[arm] = _arm_result(resp, ms, rels)
            show.arms = {arm: show.arms[arm] for arm in arms}
            resp, _ = _search(stub, row.query, user, k, f"{row.qid}:live", None)
            show.assigned_arm = resp.arm
            hit = next((r.item_id for r in resp.results if rels.get(r.item_id, 0) > 0), None)
            if hit is not None and user is not None:
                show.clicked = hit
                click = Event(f"demo-click:{row.qid}", user, hit, "click", time.time(), row.query)
                producer.send(CLICKS, key=user.encode(), value=click.to_json())
            out.append(show)
        producer.flush()
    finally:
        producer.close()
    return out


def arm_means(showcases: list[Showcase]) -> dict[str, dict[str, float]]:
    """Mean of each arm's per-query metrics and latency over the judged example queries."""
    out: dict[str, dict[str, float]] = {}
    for arm in showcases[0].arms if showcases else ():
        judged = [s.arms[arm] for s in showcases]
        out[arm] = {
            key: sum(r.metrics[key] for r in judged) / len(judged)
            for key in ("ndcg@10", "recall@10", "hr@10")
        }
        out[arm]["latency_ms_p50"] = float(np.median([r.latency_ms for r in judged]))
    return out
