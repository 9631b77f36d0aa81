"""`mrse eval` on the full benchmark datasets (skipped where ../shared/benchmarks is absent)."""

from __future__ import annotations

import json

import pytest

from mrse.cli import main
from mrse.data import load_dataset

from ..conftest import benchmark_dir

pytestmark = pytest.mark.benchmark_data


@pytest.mark.parametrize("name", ["hm", "myntra"])
def test_full_dataset_loads_clean(name):
    ds = load_dataset(benchmark_dir(name))
    assert ds.report.summary() == {"missing_images": 0, "unreadable_images": 0}
    assert len(ds.queries) > 300 and ds.qrels["relevance"].min() >= 1


@pytest.mark.parametrize(("name", "min_recall500"), [("hm", 0.4), ("myntra", 0.8)])
def test_bm25_eval_on_full_dataset(name, min_recall500, tmp_path):
    out = tmp_path / "r.json"
    assert (
        main(["eval", "--data", str(benchmark_dir(name)), "--model", "bm25", "--out", str(out)])
        == 0
    )
    payload = json.loads(out.read_text())
    assert payload["queries"] == len(load_dataset(benchmark_dir(name)).queries)
    assert payload["metrics"]["recall@500"] > min_recall500
