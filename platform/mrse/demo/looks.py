"""Demo step: more like this and shop by photo, through the same server and arms.

More like this: a product a shopper bought for a judged query is the example; the MRSE arm
answers with the items most like it, and the page shows how many of them the query's judgements
call relevant too. Shop by photo: the same product's photo, altered as a shopper's photo would
be (``mrse.evaluation.photo.alter_photo``), finds the product and the items like it; the
text-only arm reads no photos and says so (``FAILED_PRECONDITION``). Then one catalog item
that has a photo and no text at all (half of a real H&M catalog), found by its photo alone.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import grpc

from mrse.data.dataset import Dataset
from mrse.evaluation.photo import alter_photo, photo_cases, photo_only_cases
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)


PHOTO_ALONE = "photo, no text"  # an item with a photo and neither title nor description


@dataclass(frozen=True)
class Look:
    """One more-like-this or photo request and its answer."""

    kind: str  # "more like this", "photo" or PHOTO_ALONE
    seed: str  # the example item (for a photo: the item photographed)
    results: tuple[str, ...]
    relevant: int  # of the results, how many the seed's query judges relevant
    rank: int | None  # photo: the photographed item's rank (None: not in the results)
    refused: dict[str, str]  # arm -> status code of an arm that cannot answer


def show_looks(
    channel: grpc.Channel,
    dataset: Dataset,
    arms: tuple[str, ...],
    experiment: str,
    n: int = 2,
    k: int = 10,
) -> list[Look]:
    """``n`` more-like-this and ``n`` photo requests through the MRSE arm (QA override), and
    one photo of an item that has no text when the catalog has one; each photo also through
    the other arms, which may refuse it."""
    stub = search_pb2_grpc.SearchServiceStub(channel)
    cases, images = photo_cases(dataset)
    out = []
    for i, case in enumerate(cases[:n]):
        req = search_pb2.SimilarItemsRequest(
            positive_ids=[case.seed], k=k, experiment=experiment, arm_override="mrse",
            request_id=f"like:{i}",
        )  # fmt: skip
        got = tuple(r.item_id for r in stub.SimilarItems(req, timeout=30).results)
        out.append(Look("more like this", case.seed, got,
                        sum(g in case.targets for g in got), None, {}))  # fmt: skip
        photo = alter_photo(images[case.seed], random.Random(i))
        rank, got, refused = _by_photo(stub, photo, case.seed, arms, experiment, k, f"photo:{i}")
        out.append(Look("photo", case.seed, got, sum(g in case.targets for g in got), rank,
                        refused))  # fmt: skip
    for case in photo_only_cases(dataset.items, n=1):
        photo = alter_photo(images[case.seed], random.Random(case.seed))
        rank, got, refused = _by_photo(stub, photo, case.seed, arms, experiment, k, "photo:alone")
        out.append(Look(PHOTO_ALONE, case.seed, got, 0, rank, refused))
    return out


def _by_photo(
    stub: search_pb2_grpc.SearchServiceStub,
    photo: bytes,
    seed: str,
    arms: tuple[str, ...],
    experiment: str,
    k: int,
    request_id: str,
) -> tuple[int | None, tuple[str, ...], dict[str, str]]:
    """``photo`` through each arm: the photographed ``seed``'s rank in the MRSE arm's answer
    (None: not in it), that answer, and the arms that refused (arm -> status code)."""
    refused, got = {}, ()
    for arm in arms:
        req = search_pb2.SearchByPhotoRequest(
            photo=photo, k=k, experiment=experiment, arm_override=arm,
            request_id=f"{request_id}:{arm}",
        )  # fmt: skip
        try:
            answer = tuple(r.item_id for r in stub.SearchByPhoto(req, timeout=60).results)
        except grpc.RpcError as exc:
            refused[arm] = exc.code().name
            continue
        if arm == "mrse":
            got = answer
    return (got.index(seed) + 1 if seed in got else None), got, refused


def format_looks(looks: list[Look], titles: dict[str, str]) -> str:
    """The console lines: each request's example, what came back, and how much of it fits."""
    lines = ["\nmore like this and shop by photo (the MRSE arm):"]
    for look in looks:
        seed = titles.get(look.seed, look.seed) or look.seed
        head = f"  {look.kind:<14} {seed[:40]!r:<43}"
        if look.kind in ("photo", PHOTO_ALONE):
            where = "not in the top 10" if look.rank is None else f"found at rank {look.rank}"
            refused = "; ".join(f"{a}: {c}" for a, c in look.refused.items())
            head += f" {where}" + (f" ({refused})" if refused else "")
        tops = ", ".join(repr((titles.get(r, r) or r)[:28]) for r in look.results[:3])
        fits = ("no text: found by its photo alone" if look.kind == PHOTO_ALONE
                else f"{look.relevant}/{len(look.results)} relevant to its query")  # fmt: skip
        lines.append(f"{head}; {fits}; {tops}")
    return "\n".join(lines)
