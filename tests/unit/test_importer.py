from __future__ import annotations

import json

import pytest
from PIL import Image

from mrse.data import DataValidationError
from mrse.data.importer import ImportConfig, import_catalog


def _photo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (30, 40), (200, 10, 10)).save(path, format="JPEG")


def test_imports_csv_catalog_and_jsonl_log_with_aliases(tmp_path):
    src = tmp_path / "shop"
    _photo(src / "pics" / "a.jpg")
    (src / "catalog.csv").write_text(
        "sku,name,description,brand,category,price,image_path\n"
        "007,Red dress,Summer dress,Acme,Dresses,19.5,pics/a.jpg\n"
        "008,Blue shirt,,Acme,Shirts,,pics/missing.jpg\n"
        "009,,,Acme,,,\n"
    )
    with (src / "log.jsonl").open("w") as f:
        f.write(
            json.dumps({"customer_id": "c1", "sku": "007", "timestamp": "2024-05-01T10:00:00"})
            + "\n"
        )
        f.write(
            json.dumps(
                {
                    "customer_id": "c1",
                    "sku": "008",
                    "timestamp": "2024-05-02",
                    "type": "purchase",
                    "query": "shirt",
                }
            )
            + "\n"
        )
    ds = import_catalog(
        ImportConfig(
            catalog=src / "catalog.csv", interactions=src / "log.jsonl", out=tmp_path / "out"
        )
    )
    assert list(ds.items["item_id"]) == ["007", "008", "009"]  # leading zeros kept
    assert ds.items.loc[0, "image"].endswith("images/007.jpg")
    assert ds.items.loc[0, "price"] == 19.5
    assert ds.items.loc[1, "image"] == "" and len(ds.report.missing_images) == 1
    assert list(ds.events["event"]) == ["click", "purchase"]
    assert ds.events["ts"].notna().all()


def test_explicit_column_mapping_and_clear_error(tmp_path):
    (tmp_path / "c.csv").write_text("code,label\nX1,Hat\n")
    with pytest.raises(DataValidationError, match="no column for 'item_id'.*--column item_id="):
        import_catalog(ImportConfig(catalog=tmp_path / "c.csv", out=tmp_path / "o"))
    ds = import_catalog(
        ImportConfig(
            catalog=tmp_path / "c.csv",
            out=tmp_path / "o",
            columns={"item_id": "code", "title": "label"},
        )
    )
    assert ds.item_texts == ["Hat"]


def test_interactions_naming_unknown_items_are_rejected(tmp_path):
    (tmp_path / "c.csv").write_text("id,title\nA,Hat\n")
    (tmp_path / "e.csv").write_text("user_id,item_id,ts\nu,B,2024-01-01\n")
    with pytest.raises(DataValidationError, match="events.parquet.*'B'"):
        import_catalog(
            ImportConfig(
                catalog=tmp_path / "c.csv", interactions=tmp_path / "e.csv", out=tmp_path / "o"
            )
        )


def test_unsupported_file_type(tmp_path):
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(DataValidationError, match="unsupported file type"):
        import_catalog(ImportConfig(catalog=tmp_path / "c.xlsx", out=tmp_path / "o"))
