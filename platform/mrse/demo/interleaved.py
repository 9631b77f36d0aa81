"""Demo step: one interleaved experiment. Every judged example query is asked again by its
shopper through an experiment that interleaves the two arms (team draft); the shopper clicks
the first relevant result, whichever arm put it there, and the report credits the click to
that arm and says, per shopper, which arm won."""

from __future__ import annotations

import time

import pandas as pd
from kafka import KafkaProducer

from mrse.kafka_client import client_options
from mrse.streaming.events import Event
from mrse.streaming.topics import CLICKS
from mrse.v1 import search_pb2, search_pb2_grpc


def run_interleaved(
    channel, queries: pd.DataFrame, qrels: dict[str, dict[str, int]], experiment: str,
    bootstrap: str, k: int = 10,
) -> int:  # fmt: skip
    """Ask each query once through ``experiment`` as its shopper and click the first relevant
    item shown; returns the clicks sent."""
    stub = search_pb2_grpc.SearchServiceStub(channel)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             **client_options())  # fmt: skip
    sent = 0
    try:
        for row in queries.itertuples(index=False):
            user = row.user_id if isinstance(row.user_id, str) else None
            if user is None:
                continue
            req = search_pb2.SearchRequest(query=row.query, user_id=user, k=k,
                                           experiment=experiment,
                                           request_id=f"{row.qid}:interleaved")  # fmt: skip
            resp = stub.Search(req, timeout=30)
            rels = qrels.get(row.qid, {})
            hit = next((r.item_id for r in resp.results if rels.get(r.item_id, 0) > 0), None)
            if hit is not None:
                click = Event(f"demo-il-click:{row.qid}", user, hit, "click", time.time(),
                              row.query)  # fmt: skip
                producer.send(CLICKS, key=user.encode(), value=click.to_json())
                sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent
