"""Shop by photo for items that have only a photo (docs/benchmarks.md, "Shop by photo misses
items that have only a photo").

    .venv/bin/python docs/bench/scripts/photo_only_items.py ../shared/benchmarks/hm runs/hm-mrse \
        [--work-dir results/serve-bench] [--items 20]

Draws ``--items`` catalog items with a photo and no title, and as many with both (seeded), and
asks the serving engine (``mrse bench-serving``'s, built in ``--work-dir`` when it is not there
yet) to find each by its own photo, as stored and altered as a shopper's photo would be
(``mrse.evaluation.photo.alter_photo``): the photo decoded as the server decodes it, then
``SearchByPhoto``'s path. Prints found@10 per group, and each item's rank among the whole
catalog by the towers alone (exact search): an item the towers rank below their
``PHOTO_CANDIDATES`` is found only through the photo channel's own candidates (since
2026-12-08; before, it could not be found at all).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

from mrse.data import load_dataset
from mrse.encoders.image import preprocess
from mrse.evaluation.photo import alter_photo
from mrse.features.photo import PHOTO_CANDIDATES, QUERY_FRAME
from mrse.index import SearchFilter
from mrse.jobs.bench_serving import ServeBenchConfig, _setup, bench_engine
from mrse.models.photo import photo_query_vectors
from mrse.serving.validation import validate_photo
from mrse.v1 import search_pb2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("run")
    ap.add_argument("--work-dir", default="results/serve-bench")
    ap.add_argument("--items", type=int, default=20)
    args = ap.parse_args()
    data = Path(args.data)
    dataset = load_dataset(data)
    cfg = ServeBenchConfig(data=data, run=Path(args.run), work_dir=Path(args.work_dir))
    if not (cfg.work_dir / "index").exists():
        _setup(cfg, dataset)
    engine = bench_engine(cfg, "minilm-int8", 50_000)
    bundle = next(iter(engine.bundles.values()))
    run, items = bundle.run, dataset.items
    titled = items["title"].fillna("") != ""
    photo = items["image"].fillna("") != ""
    everything = SearchFilter(in_stock=(True, False))
    print(
        "| items | found@10, own photo | found@10, altered photo | towers' rank of the item, "
        f"median (share beyond {PHOTO_CANDIDATES}) |"
    )
    print("|---|---|---|---|")
    for label, group in (("photo only", ~titled & photo), ("photo and text", titled & photo)):
        sample = items[group].sample(args.items, random_state=1)
        found = {False: 0, True: 0}
        ranks = []
        for _, row in sample.iterrows():
            raw = Path(row["image"]).read_bytes()
            for altered in (False, True):
                shot = alter_photo(row["image"], random.Random(1)) if altered else raw
                req = validate_photo(search_pb2.SearchByPhotoRequest(photo=shot, k=10))
                pixels = preprocess(req.photo_bytes, (QUERY_FRAME,))  # as the server decodes
                out = engine.search(replace(req, photo_bytes=b"", photo=pixels))
                found[altered] += row["item_id"] in [r.item_id for r in out.results]
            features = engine._photos(preprocess(raw, (QUERY_FRAME,))[None])
            query = photo_query_vectors(run.model, run.featurizer.stats, run.featurizer.shape,
                                        features)[0]  # fmt: skip
            hits = bundle.index.search(query, len(items), everything, exact=True)
            ranks.append([h.item_id for h in hits].index(row["item_id"]))
        n = len(sample)
        beyond = float(np.mean(np.array(ranks) >= PHOTO_CANDIDATES))
        print(
            f"| {label} ({n}) | {found[False] / n:.2f} | {found[True] / n:.2f} "
            f"| {int(np.median(ranks))} ({beyond:.2f}) |"
        )
    engine.close()


if __name__ == "__main__":
    main()
