from __future__ import annotations

import pandas as pd
import pytest

from mrse.data import DataValidationError, load_dataset


def test_loads_a_valid_dataset_with_clean_types(make_dataset):
    ds = load_dataset(make_dataset())
    assert list(ds.items["item_id"]) == ["i1", "i2", "i3"]
    assert ds.item_texts == [
        "Black vest top. Jersey vest top.",
        "Blue jeans. Slim denim jeans.",
        "",
    ]
    assert pd.isna(ds.items["price"].iloc[1])
    assert ds.events["ts"].dtype == "datetime64[ns]"
    assert ds.qrels_by_query == {"q1": {"i1": 2, "i3": 1}, "q2": {"i2": 1}}
    assert ds.report.summary() == {"missing_images": 0, "unreadable_images": 0}


def test_duplicate_item_id_names_file_and_rows(make_dataset):
    items = [
        {"item_id": "i1", "title": "a", "image": ""},
        {"item_id": "i2", "title": "b", "image": ""},
        {"item_id": "i1", "title": "c", "image": ""},
    ]
    with pytest.raises(DataValidationError) as err:
        load_dataset(make_dataset(items=items, events=None, qrels=None))
    msg = str(err.value)
    assert "items.parquet" in msg and "rows 0, 2" in msg and "duplicate item_id" in msg


def test_missing_column_is_reported(make_dataset):
    with pytest.raises(DataValidationError, match="missing column.*'title'"):
        load_dataset(make_dataset(items=[{"item_id": "i1", "image": ""}], events=None, qrels=None))


def test_qrels_naming_unknown_item(make_dataset):
    qrels = [
        {"qid": "q1", "item_id": "i1", "relevance": 1},
        {"qid": "q1", "item_id": "zz", "relevance": 1},
    ]
    with pytest.raises(DataValidationError) as err:
        load_dataset(make_dataset(qrels=qrels))
    assert "qrels.parquet (row 1)" in str(err.value) and "'zz'" in str(err.value)


def test_events_naming_unknown_item(make_dataset):
    events = [
        {"user_id": "u", "item_id": "nope", "ts": "2020-01-01", "event": "click", "query": None}
    ]
    with pytest.raises(DataValidationError, match=r"events.parquet \(row 0\).*'nope'"):
        load_dataset(make_dataset(events=events))


@pytest.mark.parametrize(
    ("ts", "problem"),
    [
        ("not a date", "unparseable"),
        ("1970-01-01", "outside"),
        ("2150-01-01", "outside"),
        ("2999-01-01", "out-of-range"),
    ],
)
def test_bad_and_absurd_timestamps(make_dataset, ts, problem):
    events = [{"user_id": "u", "item_id": "i1", "ts": ts, "event": "click", "query": None}]
    with pytest.raises(DataValidationError, match=problem):
        load_dataset(make_dataset(events=events))


def test_unknown_event_type(make_dataset):
    events = [
        {"user_id": "u", "item_id": "i1", "ts": "2020-01-01", "event": "hover", "query": None}
    ]
    with pytest.raises(DataValidationError, match="'event' must be one of"):
        load_dataset(make_dataset(events=events))


def test_qrels_for_unknown_query_and_non_integer_relevance(make_dataset):
    with pytest.raises(DataValidationError, match="not in queries.parquet"):
        load_dataset(make_dataset(qrels=[{"qid": "q9", "item_id": "i1", "relevance": 1}]))
    with pytest.raises(DataValidationError, match="integers"):
        load_dataset(make_dataset(qrels=[{"qid": "q1", "item_id": "i1", "relevance": 1.5}]))


def test_missing_photo_is_counted_not_dropped(make_dataset):
    root = make_dataset()
    (root / "images" / "i2.jpg").unlink()
    ds = load_dataset(root)
    assert len(ds.items) == 3
    assert ds.report.missing_images == ["i2"]
    assert ds.items.loc[1, "image"] == ""


def test_missing_items_file_and_not_a_directory(tmp_path):
    with pytest.raises(DataValidationError, match="not a directory"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataValidationError, match="items.parquet: file is missing"):
        load_dataset(tmp_path)


def test_corrupt_parquet(make_dataset):
    root = make_dataset()
    (root / "events.parquet").write_bytes(b"garbage")
    with pytest.raises(DataValidationError, match="not a readable parquet file"):
        load_dataset(root)


def test_optional_tables_may_be_absent(make_dataset):
    ds = load_dataset(make_dataset(events=None, queries=None, qrels=None))
    assert len(ds.events) == 0 and len(ds.queries) == 0 and len(ds.qrels) == 0


def test_bundled_samples_are_valid(sample_hm, sample_myntra):
    for root in (sample_hm, sample_myntra):
        ds = load_dataset(root)
        assert len(ds.items) >= 200 and len(ds.queries) >= 30
        assert ds.report.summary() == {"missing_images": 0, "unreadable_images": 0}
