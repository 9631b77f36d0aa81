"""The demo's live-catalog step: while the server runs, a price cut, a sell-out and a new item
with its photo go through the catalog topic and the catalog worker, and show up in gRPC search
results within seconds (each timed from publishing to the first search that reflects it)."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from PIL import Image

from mrse.catalog.events import CatalogEvent, ItemContent
from mrse.catalog.publish import publish
from mrse.catalog.worker import CATALOG
from mrse.data.dataset import Dataset
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)


def _until(check: Callable[[], bool], timeout: float = 60.0) -> float:
    """Seconds until ``check()`` holds (searching every 50 ms)."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the catalog change did not reach the search results in time")
        time.sleep(0.05)
    return time.perf_counter() - start


def show_live_catalog(
    channel: grpc.Channel, bootstrap: str, dataset: Dataset, photos: Path, experiment: str
) -> dict:
    stub = search_pb2_grpc.SearchServiceStub(channel)
    query = str(dataset.queries["query"].iloc[0])

    def search(q: str, k: int = 10, stock: tuple[str, ...] = ()) -> list:
        filters = [search_pb2.FieldFilter(field="in_stock", any=list(stock))] if stock else []
        req = search_pb2.SearchRequest(query=q, k=k, experiment=experiment,
                                       request_id="live-catalog", filters=filters)  # fmt: skip
        return list(stub.Search(req).results)

    def send(item_id: str, kind: str, content=None, **attributes) -> None:
        now = time.time()
        version = int(now * 1000)
        event = CatalogEvent(f"demo-{item_id}-{version}", item_id, version, now, kind,  # type: ignore[arg-type]
                             content, attributes)  # fmt: skip
        publish(bootstrap, CATALOG, [event])

    first = search(query)
    a, b = first[0], first[1]
    new_price = round((a.price if a.HasField("price") else 1.0) * 0.5, 6)
    send(a.item_id, "patch", price=new_price)
    t_price = _until(lambda: any(r.item_id == a.item_id and abs(r.price - new_price) < 1e-9
                                 for r in search(query)))  # fmt: skip
    send(b.item_id, "patch", in_stock=False)
    t_sold = _until(lambda: all(r.item_id != b.item_id for r in search(query)))
    sold_out = [r.item_id for r in search(query, stock=("false",))]
    # a new item: another photo (the first hit's, mirrored: bytes no encoder has seen)
    row = dataset.items.set_index("item_id").loc[a.item_id]
    photos.mkdir(parents=True, exist_ok=True)
    # absolute: the worker reads a relative path from its first photo root, not from here
    photo = photos / f"new-{int(time.time())}.jpg"
    if row["image"]:
        img = Image.open(row["image"]).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        photo.write_bytes(buf.getvalue())
    title = f"{row['title']} new season"
    content = ItemContent(title, str(row["description"]), str(row["brand"]), str(row["category"]),
                          str(photo.resolve()) if row["image"] else "")  # fmt: skip
    send("demo-new-item", "upsert", content, price=new_price, in_stock=True)
    t_new = _until(lambda: any(r.item_id == "demo-new-item" for r in search(title, k=100)))
    found = list(enumerate(search(title, k=100), 1))
    rank, hit = next((i, r) for i, r in found if r.item_id == "demo-new-item")
    print(
        f"\nlive catalog, while the server runs (publish -> first search that shows it):\n"
        f"  price of {a.item_id} cut to {new_price:g}: visible after {t_price * 1000:.0f} ms\n"
        f"  {b.item_id} sold out: gone from {query!r} after {t_sold * 1000:.0f} ms "
        f"(still there with in_stock=false: {b.item_id in sold_out})\n"
        f"  new item with its photo {title!r}: searchable after {t_new * 1000:.0f} ms "
        f"(rank {rank} for its title, found by: {hit.found_by})"
    )
    return {
        "price_patch_visible_ms": round(t_price * 1000),
        "sold_out_hidden_ms": round(t_sold * 1000),
        "new_item_searchable_ms": round(t_new * 1000),
        "new_item_rank_for_its_title": rank,
        "new_item_title": title,
        "sold_out_listed_with_in_stock_false": b.item_id in sold_out,
    }
