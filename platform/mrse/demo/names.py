"""Demo step: a shopper types a product's name (exactly, in part, misspelt) instead of a colour
and a type. Each arm answers through gRPC; the page and the console show where the named product
ranks and which channel found it (the MRSE arm fuses the lexical channel: ``retrieval:
hybrid``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from mrse.data.dataset import Dataset
from mrse.data.shop_queries import generate_queries
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)

CLASSES = ("title", "fragment", "typo", "description")


@dataclass(frozen=True)
class NameSearch:
    """One name query and, per arm, the rank of its first relevant item (None: not in the top
    ``k``) and the channel that found it."""

    cls: str
    query: str
    relevant: tuple[str, ...]
    ranks: dict[str, int | None]
    found_by: dict[str, str]


def name_searches(
    channel: grpc.Channel,
    dataset: Dataset,
    arms: tuple[str, ...],
    experiment: str,
    per_class: int = 3,
    k: int = 10,
    extra: tuple[tuple[str, str, tuple[str, ...]], ...] = (),
) -> list[NameSearch]:
    """``per_class`` generated queries of each of ``CLASSES`` from the dataset's held-out
    titles (``mrse.data.shop_queries``), plus ``extra`` (class, query, relevant ids), through
    every arm (QA override)."""
    stub = search_pb2_grpc.SearchServiceStub(channel)
    mix = generate_queries(dataset.items, per_class=per_class, seed=7, classes=CLASSES)
    relevant = mix.qrels.groupby("qid")["item_id"].agg(tuple)
    wanted = [(c, q, relevant[qid]) for qid, q, c in mix.queries[["qid", "query", "cls"]]
              .itertuples(index=False)]  # fmt: skip
    out = []
    for cls, query, rel in [*wanted, *extra]:
        ranks, found = {}, {}
        for arm in arms:
            req = search_pb2.SearchRequest(query=query, k=k, experiment=experiment,
                                           arm_override=arm, request_id=f"names:{arm}")  # fmt: skip
            results = list(stub.Search(req, timeout=30).results)
            hit = next((i for i, r in enumerate(results, 1) if r.item_id in rel), None)
            ranks[arm] = hit
            found[arm] = results[hit - 1].found_by if hit else "-"
        out.append(NameSearch(cls, query, tuple(rel), ranks, found))
    return out


def format_name_searches(searches: list[NameSearch], arms: tuple[str, ...]) -> str:
    """The console table: per query, the named product's rank in each arm and who found it."""
    lines = ["\nproduct-name searches (rank of the named product in the top 10; found by):"]
    for s in searches:
        cells = "  ".join(
            f"{arm} {'-' if s.ranks[arm] is None else s.ranks[arm]:>2} ({s.found_by[arm]:<7})"
            for arm in arms
        )
        lines.append(f"  {s.cls:<11} {s.query[:44]!r:<47} {cells}")
    return "\n".join(lines)
