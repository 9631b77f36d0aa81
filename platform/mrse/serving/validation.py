"""Search request validation: every rejection says what to fix (mapped to INVALID_ARGUMENT)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

from mrse.index.base import SearchFilter

MAX_QUERY_CHARS = 512
MAX_K = 1000
DEFAULT_K = 100
MAX_FILTERS = 16  # filters per request (each field at most once is the normal case)
MAX_FILTER_VALUES = 100  # values in one filter's `any`
MAX_TOTAL_FILTER_VALUES = 256  # values over all of a request's filters
MAX_ID_CHARS = 256  # ids, experiment and arm names, filter values
MAX_EXAMPLES = 64  # positive (and negative) item ids of a more-like-this request
MAX_PHOTO_BYTES = 3 * 1024 * 1024  # a shop-by-photo request's photo


class InvalidRequest(ValueError):
    """The request is malformed; the message says how."""


class TooLarge(InvalidRequest):
    """The request is over a size limit (answered RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class ValidRequest:
    query: str
    user_id: str | None
    k: int
    filter: SearchFilter
    experiment: str | None
    request_id: str
    arm_override: str | None
    session_id: str | None = None
    # more like this (``validate_similar``): the examples; ``query`` is then empty
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    # shop by photo (``validate_photo``): the photo's bytes as sent, then its decoded pixels
    # (3, 224, 224), its ``QUERY_FRAME``, once the server has decoded them off the event loop
    photo_bytes: bytes = field(default=b"", repr=False)
    photo: object = field(default=None, compare=False, repr=False)
    # the home feed (``validate_recommend``): ``query`` is then empty; a guest's viewed items
    # (newest last) stand in for a stored profile; ``exclude_seen``: leave out what the
    # shopper's profile (or the viewed items) holds
    feed: bool = False
    viewed: tuple[str, ...] = ()
    exclude_seen: bool = False


def _no_nul(value: str, name: str) -> None:
    # valid UTF-8, but not text: PostgreSQL, C libraries and log pipelines choke on it
    if "\x00" in value:
        raise InvalidRequest(f"{name} contains a NUL character")


def _text_id(value: str, name: str) -> str | None:
    _no_nul(value, name)
    value = value.strip()
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequest(f"{name} longer than {MAX_ID_CHARS} characters")
    return value or None


def validate(req) -> ValidRequest:
    """Check a ``mrse.v1.SearchRequest`` (or anything with its fields)."""
    _no_nul(req.query, "query")
    query = (req.query or "").strip()
    if not query:
        raise InvalidRequest("query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query longer than {MAX_QUERY_CHARS} characters ({len(query)})")
    return ValidRequest(query=query, **_common(req))


def _common(req) -> dict:
    """The fields every request has (who asks, k, filters, routing), checked."""
    return {
        "user_id": _text_id(req.user_id, "user_id"),
        "k": _k(req.k),
        "filter": _filter(req.filters),
        "experiment": _text_id(req.experiment, "experiment"),
        "request_id": _text_id(req.request_id, "request_id") or uuid.uuid4().hex,
        "arm_override": _text_id(req.arm_override, "arm_override"),
        "session_id": _text_id(getattr(req, "session_id", ""), "session_id"),
    }


def validate_similar(req) -> ValidRequest:
    """Check a ``mrse.v1.SimilarItemsRequest`` (or anything with its fields)."""
    for name in ("positive_ids", "negative_ids"):
        if len(getattr(req, name)) > MAX_EXAMPLES:
            raise InvalidRequest(f"at most {MAX_EXAMPLES} {name}, got {len(getattr(req, name))}")
    positives = _ids(req.positive_ids, "positive_ids")
    negatives = _ids(req.negative_ids, "negative_ids")
    if not positives:
        raise InvalidRequest("positive_ids is empty: name at least one item to find more like")
    both = sorted(set(positives) & set(negatives))
    if both:
        raise InvalidRequest(f"item {both[0]!r} is in both positive_ids and negative_ids")
    return ValidRequest(query="", positives=positives, negatives=negatives, **_common(req))


def validate_photo(req) -> ValidRequest:
    """Check a ``mrse.v1.SearchByPhotoRequest`` (the photo's size only: it is decoded later)."""
    if not req.photo:
        raise InvalidRequest("photo is empty: send the image's bytes (JPEG, PNG or WebP)")
    if len(req.photo) > MAX_PHOTO_BYTES:
        raise TooLarge(f"photo of {len(req.photo):,} bytes: at most {MAX_PHOTO_BYTES:,}")
    return ValidRequest(query="", photo_bytes=bytes(req.photo), **_common(req))


def validate_recommend(req) -> ValidRequest:
    """Check a ``mrse.v1.RecommendRequest`` (or anything with its fields)."""
    if len(req.viewed_ids) > MAX_EXAMPLES:
        raise InvalidRequest(f"at most {MAX_EXAMPLES} viewed_ids, got {len(req.viewed_ids)}")
    viewed = _ids(req.viewed_ids, "viewed_ids", keep_last=True)
    return ValidRequest(query="", feed=True, viewed=viewed,
                        exclude_seen=bool(req.exclude_purchased), **_common(req))  # fmt: skip


def _ids(values, name: str, keep_last: bool = False) -> tuple[str, ...]:
    """Item ids, stripped, each non-empty and within the id limits, duplicates dropped (the
    first kept, or the last with ``keep_last``)."""
    out = []
    for v in values:
        item = _text_id(v, f"an id of {name}")
        if item is None:
            raise InvalidRequest(f"{name} holds an empty id")
        out.append(item)
    if keep_last:  # a list in time order: a repeated id counts where it was seen last
        return tuple(reversed(dict.fromkeys(reversed(out))))
    return tuple(dict.fromkeys(out))


def _k(k: int) -> int:
    k = int(k) or DEFAULT_K
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _filter(filters) -> SearchFilter:
    """The ``FieldFilter`` list of a request as one ``SearchFilter``."""
    categories: list[str] = []
    brands: list[str] = []
    price_min = price_max = None
    stock: tuple[bool, ...] = (True,)
    # counted before anything is looked at, so an oversized request costs nothing more
    if len(filters) > MAX_FILTERS:
        raise InvalidRequest(f"at most {MAX_FILTERS} filters per request, got {len(filters)}")
    total = sum(len(f.any) for f in filters)
    if total > MAX_TOTAL_FILTER_VALUES:
        raise InvalidRequest(
            f"at most {MAX_TOTAL_FILTER_VALUES} filter values per request in all, got {total}"
        )
    for f in filters:
        if f.field in ("category", "brand"):
            if not f.any:
                raise InvalidRequest(f"filter on {f.field!r} needs at least one value in 'any'")
            if len(f.any) > MAX_FILTER_VALUES:
                raise InvalidRequest(f"filter on {f.field!r}: at most {MAX_FILTER_VALUES} values")
            if f.HasField("gte") or f.HasField("lte"):
                raise InvalidRequest(f"filter on {f.field!r} takes 'any', not a range")
            for v in f.any:
                _no_nul(v, f"a value of the {f.field!r} filter")
                if len(v) > MAX_ID_CHARS:
                    raise InvalidRequest(
                        f"filter on {f.field!r}: values longer than {MAX_ID_CHARS} characters"
                    )
            (categories if f.field == "category" else brands).extend(f.any)
        elif f.field == "price":
            if f.any:
                raise InvalidRequest("filter on 'price' takes 'gte'/'lte', not 'any'")
            if not (f.HasField("gte") or f.HasField("lte")):
                raise InvalidRequest("filter on 'price' needs 'gte' and/or 'lte'")
            for bound in ("gte", "lte"):
                if f.HasField(bound) and (
                    not math.isfinite(getattr(f, bound)) or getattr(f, bound) < 0
                ):
                    raise InvalidRequest(f"price {bound} must be a finite, non-negative number")
            price_min = f.gte if f.HasField("gte") else price_min
            price_max = f.lte if f.HasField("lte") else price_max
        elif f.field == "in_stock":
            if f.HasField("gte") or f.HasField("lte") or not f.any:
                raise InvalidRequest("filter on 'in_stock' takes 'any' of \"true\" / \"false\"")
            if not set(f.any) <= {"true", "false"}:
                raise InvalidRequest('filter on \'in_stock\': values are "true" or "false"')
            stock = tuple(sorted({v == "true" for v in f.any}, reverse=True))
        else:
            name = f.field if len(f.field) <= 64 else f.field[:64] + "..."
            raise InvalidRequest(
                f"unknown filter field {name!r}; use category, brand, price or in_stock"
            )
    if price_min is not None and price_max is not None and price_min > price_max:
        raise InvalidRequest(f"price range is empty: gte {price_min} > lte {price_max}")
    return SearchFilter(tuple(categories), tuple(brands), price_min, price_max, stock)
