"""Import a user's own catalog (CSV or JSONL) and interaction log into the benchmark layout.

Columns are matched by common names (``id``/``sku`` -> ``item_id``, ``name`` -> ``title``, ...) or
by an explicit mapping. Photos are copied into ``images/``; a photo that is missing is reported
and counted, and the item is imported without one. The result is validated by ``load_dataset``.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mrse.data.dataset import Dataset, DataValidationError, load_dataset

logger = logging.getLogger(__name__)

ALIASES: dict[str, tuple[str, ...]] = {
    "item_id": ("item_id", "id", "sku", "product_id", "article_id"),
    "title": ("title", "name", "product_name", "prod_name"),
    "description": ("description", "desc", "detail_desc", "details"),
    "brand": ("brand", "brand_name", "manufacturer"),
    "category": ("category", "product_type", "category_path", "department"),
    "price": ("price", "list_price"),
    "image": ("image", "image_path", "img", "photo"),
    "user_id": ("user_id", "user", "customer_id", "visitor_id"),
    "ts": ("ts", "timestamp", "time", "date", "t_dat"),
    "event": ("event", "event_type", "type", "action"),
    "query": ("query", "search_query", "search_term"),
    "qid": ("qid", "query_id"),
    "relevance": ("relevance", "grade", "label"),
}
ITEM_FIELDS = ("item_id", "title", "description", "brand", "category", "price", "image")
EVENT_FIELDS = ("user_id", "item_id", "ts", "event", "query")
QUERY_FIELDS = ("qid", "query", "user_id", "ts")
QREL_FIELDS = ("qid", "item_id", "relevance")


@dataclass(frozen=True)
class ImportConfig:
    """Where the user's files are and how their columns are named.

    ``columns`` maps a layout column to the user's column (``{"item_id": "sku"}``) and wins
    over the built-in aliases. ``image_root`` resolves relative image paths (default: the
    catalog file's directory).
    """

    catalog: Path
    out: Path
    interactions: Path | None = None
    queries: Path | None = None
    qrels: Path | None = None
    image_root: Path | None = None
    columns: dict[str, str] = field(default_factory=dict)
    default_event: str = "click"


def read_records(path: Path) -> pd.DataFrame:
    """Read a CSV or JSONL file with every column as text (ids like ``0108775015`` keep zeros)."""
    if not path.is_file():
        raise DataValidationError(path, "file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False, convert_dates=False).astype(object)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(
                path, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ","
            )
    except ValueError as exc:
        raise DataValidationError(path, f"cannot parse: {exc}") from exc
    raise DataValidationError(path, f"unsupported file type {suffix!r}; use .csv, .tsv or .jsonl")


def map_columns(
    df: pd.DataFrame,
    fields: tuple[str, ...],
    explicit: dict[str, str],
    path: Path,
    required: tuple[str, ...],
) -> pd.DataFrame:
    """Rename the user's columns to the layout's; absent optional fields become nulls."""
    out = pd.DataFrame(index=df.index)
    lower = {c.lower(): c for c in df.columns}
    for name in fields:
        source = explicit.get(name)
        if source is not None and source not in df.columns:
            raise DataValidationError(path, f"mapped column {source!r} (for {name!r}) not found")
        if source is None:
            source = next((lower[a] for a in ALIASES[name] if a in lower), None)
        if source is None:
            if name in required:
                raise DataValidationError(
                    path,
                    f"no column for {name!r}: tried {list(ALIASES[name])}; "
                    f"found {list(df.columns)}. Map one with --column {name}=YOUR_COLUMN",
                )
            out[name] = None
        else:
            col = df[source]
            out[name] = col.where(col.astype(str) != "", None) if name != "item_id" else col
    return out


def _safe_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", item_id)


def import_catalog(config: ImportConfig) -> Dataset:
    """Write ``config.out`` in the benchmark layout and return it loaded and validated."""
    items = map_columns(
        read_records(config.catalog), ITEM_FIELDS, config.columns, config.catalog, ("item_id",)
    )
    items["item_id"] = items["item_id"].astype(str).str.strip()
    for col in ("title", "description", "brand", "category"):
        items[col] = items[col].fillna("").astype(str)
    items["price"] = pd.to_numeric(items["price"], errors="coerce")
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    image_root = config.image_root or config.catalog.parent
    images, missing = [], []
    for item_id, src in zip(items["item_id"], items["image"], strict=True):
        if src is None or str(src).strip() == "":
            images.append("")
            continue
        src_path = Path(str(src))
        src_path = src_path if src_path.is_absolute() else image_root / src_path
        if not src_path.is_file():
            missing.append(str(src_path))
            images.append("")
            continue
        rel = f"images/{_safe_name(item_id)}{src_path.suffix.lower() or '.jpg'}"
        shutil.copyfile(src_path, out / rel)
        images.append(rel)
    items["image"] = images
    if missing:
        logger.warning(
            "%d photo(s) named in %s do not exist (e.g. %s); those items are imported without one",
            len(missing),
            config.catalog,
            missing[0],
        )
    items.to_parquet(out / "items.parquet", index=False)

    if config.interactions is not None:
        ev = map_columns(
            read_records(config.interactions),
            EVENT_FIELDS,
            config.columns,
            config.interactions,
            ("item_id",),
        )
        ev["item_id"] = ev["item_id"].astype(str).str.strip()
        ev["event"] = ev["event"].fillna(config.default_event)
        ev.to_parquet(out / "events.parquet", index=False)
    if config.queries is not None:
        q = map_columns(
            read_records(config.queries),
            QUERY_FIELDS,
            config.columns,
            config.queries,
            ("qid", "query"),
        )
        q.to_parquet(out / "queries.parquet", index=False)
    if config.qrels is not None:
        qr = map_columns(
            read_records(config.qrels), QREL_FIELDS, config.columns, config.qrels, QREL_FIELDS
        )
        qr["relevance"] = pd.to_numeric(qr["relevance"], errors="coerce")
        qr.to_parquet(out / "qrels.parquet", index=False)
    dataset = load_dataset(out)
    dataset.report.missing_images.extend(missing)
    return dataset
