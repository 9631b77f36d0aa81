"""Load a dataset directory in the benchmark layout into validated, typed tables.

Layout (see ``docs/data.md``): ``items.parquet`` (required), ``events.parquet``,
``queries.parquet``, ``qrels.parquet``, ``users.parquet`` (optional) and ``images/``.
Every problem is reported with the file, the row and what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

ITEM_COLUMNS = ("item_id", "title", "description", "brand", "category", "price", "image")
EVENT_COLUMNS = ("user_id", "item_id", "ts", "event", "query")
QUERY_COLUMNS = ("qid", "query", "user_id", "ts")
QREL_COLUMNS = ("qid", "item_id", "relevance")
EVENT_TYPES = frozenset({"click", "purchase"})
# Timestamps outside this window are data errors (epoch zero, milliseconds read as seconds, ...).
MIN_TS = pd.Timestamp("1990-01-01")
MAX_TS = pd.Timestamp("2100-01-01")
MAX_EXAMPLES = 5


class DataValidationError(ValueError):
    """A dataset file violates the layout. The message names the file, the rows and the problem."""

    def __init__(self, file: Path | str, problem: str, rows: Iterable[int] = ()) -> None:
        rows = list(rows)
        where = f"{file}"
        if rows:
            shown = ", ".join(str(r) for r in rows[:MAX_EXAMPLES])
            more = f" and {len(rows) - MAX_EXAMPLES} more" if len(rows) > MAX_EXAMPLES else ""
            where += f" (row{'s' if len(rows) > 1 else ''} {shown}{more})"
        super().__init__(f"{where}: {problem}")
        self.file = str(file)
        self.rows = rows
        self.problem = problem


@dataclass
class ValidationReport:
    """Problems that do not stop loading but must not go unnoticed (counted, logged, exposed)."""

    missing_images: list[str] = field(default_factory=list)
    unreadable_images: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "missing_images": len(self.missing_images),
            "unreadable_images": len(self.unreadable_images),
        }


@dataclass(frozen=True)
class Dataset:
    """A validated dataset. Tables are pandas frames with the layout's columns and clean dtypes.

    ``items``: one row per item, text columns never null (empty string for "no text"),
    ``price`` float (NaN when unknown), ``image`` absolute path or ``""`` when there is none.
    ``events`` / ``queries``: ``ts`` is ``datetime64[ns]`` (NaT when unknown).
    """

    root: Path
    items: pd.DataFrame
    events: pd.DataFrame
    queries: pd.DataFrame
    qrels: pd.DataFrame
    users: pd.DataFrame | None
    report: ValidationReport

    @property
    def name(self) -> str:
        return self.root.name

    @cached_property
    def item_index(self) -> dict[str, int]:
        """item_id -> row position in ``items``."""
        return {item_id: i for i, item_id in enumerate(self.items["item_id"])}

    @cached_property
    def item_texts(self) -> list[str]:
        """Title and description joined; ``""`` for an image-only item."""
        return [
            _join_text(t, d)
            for t, d in zip(self.items["title"], self.items["description"], strict=True)
        ]

    @cached_property
    def qrels_by_query(self) -> dict[str, dict[str, int]]:
        """qid -> {item_id: relevance}."""
        out: dict[str, dict[str, int]] = {}
        for qid, item_id, rel in self.qrels[list(QREL_COLUMNS)].itertuples(index=False):
            out.setdefault(qid, {})[item_id] = int(rel)
        return out


def _join_text(title: str, description: str) -> str:
    title, description = title.strip(), description.strip()
    if title and description:
        return f"{title}. {description}"
    return title or description


def _read_table(path: Path, required: tuple[str, ...], optional: bool) -> pd.DataFrame | None:
    if not path.exists():
        if optional:
            return None
        raise DataValidationError(path, "file is missing (every dataset needs items.parquet)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataValidationError(path, f"not a readable parquet file: {exc}") from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DataValidationError(
            path, f"missing column(s) {missing}; found {table.column_names}, need {list(required)}"
        )
    return table.to_pandas()


def _string_column(df: pd.DataFrame, col: str, path: Path, nullable: bool) -> pd.Series:
    s = df[col]
    nulls = np.flatnonzero(s.isna().to_numpy())
    if len(nulls) and not nullable:
        raise DataValidationError(path, f"column {col!r} has null values", nulls.tolist())
    non_str = [
        i for i, v in enumerate(s) if v is not None and not pd.isna(v) and not isinstance(v, str)
    ]
    if non_str:
        raise DataValidationError(path, f"column {col!r} must hold strings", non_str)
    return s.astype(object).where(s.notna(), None)


def _parse_ts(raw: pd.Series) -> pd.Series:
    """ISO 8601 (fast path), then any format pandas recognises; NaT where neither works."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
    else:
        text = raw.astype(object).where(raw.notna(), None)
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        retry = parsed.isna() & raw.notna()
        if retry.any():
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def _ts_column(df: pd.DataFrame, path: Path) -> pd.Series:
    raw = df["ts"]
    parsed = _parse_ts(raw)
    bad = np.flatnonzero((raw.notna() & parsed.isna()).to_numpy())
    if len(bad):
        example = raw.iloc[bad[0]]
        raise DataValidationError(
            path, f"column 'ts' has unparseable or out-of-range values, e.g. {example!r}", bad
        )
    absurd = np.flatnonzero(((parsed < MIN_TS) | (parsed > MAX_TS)).to_numpy())
    if len(absurd):
        raise DataValidationError(
            path, f"column 'ts' outside {MIN_TS.date()}..{MAX_TS.date()}", absurd.tolist()
        )
    return parsed


def _check_known_items(df: pd.DataFrame, path: Path, known: dict[str, int]) -> None:
    unknown = np.flatnonzero(~df["item_id"].isin(known.keys()).to_numpy())
    if len(unknown):
        example = df["item_id"].iloc[unknown[0]]
        raise DataValidationError(
            path,
            f"{len(unknown)} row(s) name item_id(s) not in items.parquet, e.g. {example!r}",
            unknown.tolist(),
        )


def _empty_timed_table(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty table with the layout's columns (``ts`` typed) for an absent optional file."""
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return empty.assign(ts=pd.Series(dtype="datetime64[ns]"))


def _select_columns(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The layout's columns in order; optional ones a file lacks become nulls."""
    for col in columns:
        if col not in df.columns:
            df[col] = None
    return df[list(columns)].copy()


def load_items(root: Path, report: ValidationReport) -> pd.DataFrame:
    path = root / "items.parquet"
    df = _read_table(path, ("item_id",), optional=False)
    assert df is not None
    for col in ITEM_COLUMNS:
        if col not in df.columns:
            if col in ("item_id", "title", "image"):
                raise DataValidationError(path, f"missing column {col!r}")
            df[col] = None
    df = df[list(ITEM_COLUMNS)].copy()
    df["item_id"] = _string_column(df, "item_id", path, nullable=False)
    empty = np.flatnonzero((df["item_id"].str.strip() == "").to_numpy())
    if len(empty):
        raise DataValidationError(path, "empty item_id", empty.tolist())
    dup = df["item_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup).tolist()
        example = df["item_id"].iloc[rows[0]]
        raise DataValidationError(path, f"duplicate item_id, e.g. {example!r}", rows)
    for col in ("title", "description", "brand", "category", "image"):
        df[col] = _string_column(df, col, path, nullable=True).fillna("")
    price = pd.to_numeric(df["price"], errors="coerce")
    bad_price = np.flatnonzero((df["price"].notna() & price.isna()).to_numpy())
    if len(bad_price):
        raise DataValidationError(path, "column 'price' must be numeric", bad_price.tolist())
    negative = np.flatnonzero((price < 0).to_numpy())
    if len(negative):
        raise DataValidationError(path, "negative price", negative.tolist())
    df["price"] = price.astype("float64")
    images = []
    for item_id, rel in zip(df["item_id"], df["image"], strict=True):
        if not rel:
            images.append("")
            continue
        p = (root / rel).resolve()
        if p.is_file():
            images.append(str(p))
        else:
            report.missing_images.append(item_id)
            images.append("")
    df["image"] = images
    if report.missing_images:
        logger.warning(
            "%s: %d item(s) name an image file that does not exist, e.g. %r; "
            "they are treated as items without a photo",
            path,
            len(report.missing_images),
            report.missing_images[0],
        )
    return df.reset_index(drop=True)


def load_events(root: Path, known: dict[str, int]) -> pd.DataFrame:
    path = root / "events.parquet"
    df = _read_table(path, ("item_id", "event"), optional=True)
    if df is None:
        return _empty_timed_table(EVENT_COLUMNS)
    df = _select_columns(df, EVENT_COLUMNS)
    df["item_id"] = _string_column(df, "item_id", path, nullable=False)
    df["user_id"] = _string_column(df, "user_id", path, nullable=True)
    df["query"] = _string_column(df, "query", path, nullable=True)
    df["event"] = _string_column(df, "event", path, nullable=False)
    bad_type = np.flatnonzero(~df["event"].isin(EVENT_TYPES).to_numpy())
    if len(bad_type):
        raise DataValidationError(
            path,
            f"column 'event' must be one of {sorted(EVENT_TYPES)}, "
            f"got {df['event'].iloc[bad_type[0]]!r}",
            bad_type.tolist(),
        )
    df["ts"] = _ts_column(df, path)
    _check_known_items(df, path, known)
    return df.reset_index(drop=True)


def load_queries(root: Path) -> pd.DataFrame:
    path = root / "queries.parquet"
    df = _read_table(path, ("qid", "query"), optional=True)
    if df is None:
        return _empty_timed_table(QUERY_COLUMNS)
    df = _select_columns(df, QUERY_COLUMNS)
    df["qid"] = _string_column(df, "qid", path, nullable=False)
    dup = np.flatnonzero(df["qid"].duplicated(keep=False).to_numpy())
    if len(dup):
        raise DataValidationError(path, "duplicate qid", dup.tolist())
    df["query"] = _string_column(df, "query", path, nullable=False)
    df["user_id"] = _string_column(df, "user_id", path, nullable=True)
    df["ts"] = _ts_column(df, path)
    return df.reset_index(drop=True)


def load_qrels(root: Path, known: dict[str, int], qids: set[str]) -> pd.DataFrame:
    path = root / "qrels.parquet"
    df = _read_table(path, QREL_COLUMNS, optional=True)
    if df is None:
        return pd.DataFrame({"qid": [], "item_id": [], "relevance": []}).astype(
            {"qid": object, "item_id": object, "relevance": "int64"}
        )
    df = df[list(QREL_COLUMNS)].copy()
    df["qid"] = _string_column(df, "qid", path, nullable=False)
    df["item_id"] = _string_column(df, "item_id", path, nullable=False)
    rel = pd.to_numeric(df["relevance"], errors="coerce")
    bad = np.flatnonzero((rel.isna() | (rel != rel.round())).to_numpy())
    if len(bad):
        raise DataValidationError(path, "column 'relevance' must hold integers", bad.tolist())
    df["relevance"] = rel.astype("int64")
    _check_known_items(df, path, known)
    unknown_q = np.flatnonzero(~df["qid"].isin(qids).to_numpy())
    if len(unknown_q):
        raise DataValidationError(
            path,
            f"qid {df['qid'].iloc[unknown_q[0]]!r} is not in queries.parquet",
            unknown_q.tolist(),
        )
    dup = np.flatnonzero(df.duplicated(["qid", "item_id"], keep=False).to_numpy())
    if len(dup):
        raise DataValidationError(path, "the same (qid, item_id) pair appears twice", dup.tolist())
    return df.reset_index(drop=True)


def load_query_log(root: str | Path) -> dict[str, int]:
    """How often each non-empty query of ``root/events.parquet`` occurs (empty if there is no
    event log). Read alone and counted in Arrow: the server warms its query cache from it
    without loading the catalog or making a Python string per event."""
    import pyarrow.compute as pc

    path = Path(root) / "events.parquet"
    if not path.is_file():
        return {}
    try:
        column = pq.read_table(path, columns=["query"]).column("query")
    except (OSError, KeyError, ValueError) as exc:
        raise DataValidationError(path, f"cannot read its `query` column: {exc}") from exc
    counts = pc.value_counts(column.drop_null())
    values, n = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
    return {q: c for q, c in zip(values, n, strict=True) if isinstance(q, str) and q.strip()}


def load_dataset(root: str | Path) -> Dataset:
    """Load and validate the dataset directory ``root``.

    Raises:
        DataValidationError: a file is missing, unreadable, or violates the layout; the message
            names the file, the offending rows and the problem.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError(root, "not a directory")
    report = ValidationReport()
    items = load_items(root, report)
    known = {item_id: i for i, item_id in enumerate(items["item_id"])}
    events = load_events(root, known)
    queries = load_queries(root)
    qrels = load_qrels(root, known, set(queries["qid"]))
    users_path = root / "users.parquet"
    users = _read_table(users_path, ("user_id",), optional=True)
    logger.info(
        "loaded %s: %d items (%d with text, %d with a photo), %d events, %d queries, %d qrels",
        root,
        len(items),
        int(((items["title"] != "") | (items["description"] != "")).sum()),
        int((items["image"] != "").sum()),
        len(events),
        len(queries),
        len(qrels),
    )
    return Dataset(
        root=root,
        items=items,
        events=events,
        queries=queries,
        qrels=qrels,
        users=users,
        report=report,
    )
