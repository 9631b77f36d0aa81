"""Shared fixtures: paths to the bundled sample and (when present) the full benchmark datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
BENCHMARKS = Path(os.environ.get("MRSE_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def sample_hm() -> Path:
    return SAMPLE / "hm"


@pytest.fixture(scope="session")
def sample_myntra() -> Path:
    return SAMPLE / "myntra"


def benchmark_dir(name: str) -> Path:
    """A full dataset directory, or skip with the reason (a user's machine has no ../shared)."""
    path = BENCHMARKS / name
    if not (path / "items.parquet").exists():
        pytest.skip(
            f"full dataset {name!r} not found at {path} (set MRSE_BENCHMARKS to the benchmarks "
            "directory); CI has it"
        )
    return path


@pytest.fixture(scope="session")
def text_encoder():
    from mrse.encoders.text import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="session")
def image_encoder():
    from mrse.encoders.image import ImageEncoder

    return ImageEncoder()


def _tiny_photo(path: Path, color: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 60), color).save(path, format="JPEG")


@pytest.fixture
def make_dataset(tmp_path: Path):
    """Write a tiny, valid dataset; keyword overrides replace whole tables (as lists of dicts)."""
    import pandas as pd

    count = iter(range(1000))

    def make(**tables) -> Path:
        root = tmp_path / f"ds{next(count)}"
        root.mkdir()
        items = tables.pop(
            "items",
            [
                {
                    "item_id": "i1",
                    "title": "Black vest top",
                    "description": "Jersey vest top.",
                    "brand": "B",
                    "category": "Top",
                    "price": 9.99,
                    "image": "images/i1.jpg",
                },
                {
                    "item_id": "i2",
                    "title": "Blue jeans",
                    "description": "Slim denim jeans.",
                    "brand": "B",
                    "category": "Trousers",
                    "price": None,
                    "image": "images/i2.jpg",
                },
                {
                    "item_id": "i3",
                    "title": "",
                    "description": "",
                    "brand": "B",
                    "category": "",
                    "price": 5.0,
                    "image": "images/i3.jpg",
                },
            ],
        )
        for i, row in enumerate(items):
            if row.get("image"):
                _tiny_photo(root / row["image"], (40 * i % 255, 80, 120))
        events = tables.pop(
            "events",
            [
                {
                    "user_id": "u1",
                    "item_id": "i1",
                    "ts": "2020-01-01",
                    "event": "purchase",
                    "query": None,
                },
                {
                    "user_id": "u1",
                    "item_id": "i3",
                    "ts": "2020-02-01",
                    "event": "click",
                    "query": "top",
                },
            ],
        )
        queries = tables.pop(
            "queries",
            [
                {"qid": "q1", "query": "black top", "user_id": "u1", "ts": "2020-03-01"},
                {"qid": "q2", "query": "jeans", "user_id": None, "ts": None},
            ],
        )
        qrels = tables.pop(
            "qrels",
            [
                {"qid": "q1", "item_id": "i1", "relevance": 2},
                {"qid": "q1", "item_id": "i3", "relevance": 1},
                {"qid": "q2", "item_id": "i2", "relevance": 1},
            ],
        )
        if tables:
            raise TypeError(f"unknown tables {sorted(tables)}")
        pd.DataFrame(items).to_parquet(root / "items.parquet", index=False)
        for name, rows in (("events", events), ("queries", queries), ("qrels", qrels)):
            if rows is not None:
                pd.DataFrame(rows).to_parquet(root / f"{name}.parquet", index=False)
        return root

    return make
