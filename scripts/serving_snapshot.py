"""Snapshot what a serving config answers, to check that a refactor changed nothing.

    .venv/bin/python scripts/serving_snapshot.py --config configs/serve.yaml --out before.json
    ... change the code ...
    .venv/bin/python scripts/serving_snapshot.py --config configs/serve.yaml --out after.json
    .venv/bin/python scripts/serving_snapshot.py --compare before.json after.json

Every query of the config's dataset is sent, for the shopper who asked it, through every arm of
the default experiment (arm override), straight to the engine (no network): the answer's item
ids, scores and explanations are recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def snapshot(config: Path, k: int) -> dict:
    from mrse.data import load_dataset
    from mrse.index.base import SearchFilter
    from mrse.serving.app import build_engine, load_serve_config
    from mrse.serving.validation import ValidRequest

    cfg = load_serve_config(config)
    engine = build_engine(cfg)
    engine.warm_up()  # as the server does before it reports SERVING
    try:
        queries = load_dataset(cfg.data).queries
        experiment = engine.experiments[cfg.default_experiment]
        out: dict[str, list] = {}
        for arm in experiment.arms:
            reqs = [
                ValidRequest(
                    row.query, row.user_id if isinstance(row.user_id, str) else None, k,
                    SearchFilter(), None, f"{row.qid}:{arm.name}", arm.name,
                )
                for row in queries.itertuples(index=False)
            ]  # fmt: skip
            out[arm.name] = [
                {
                    "request": r.request_id,
                    "personalized": o.personalized,
                    "items": [x.item_id for x in o.results],
                    "scores": [x.score for x in o.results],
                    "explanations": [list(x.explanation or ()) for x in o.results],
                }
                for r, o in zip(reqs, engine.search_many(reqs), strict=True)
            ]
        return out
    finally:
        engine.close()


def compare(a: dict, b: dict, atol: float) -> list[str]:
    import numpy as np

    problems = []
    for arm in sorted(set(a) | set(b)):
        for x, y in zip(a.get(arm, []), b.get(arm, []), strict=True):
            if x["items"] != y["items"] or x["personalized"] != y["personalized"]:
                problems.append(f"{arm} {x['request']}: different results")
            elif not np.allclose(x["scores"], y["scores"], atol=atol) or not np.allclose(
                np.array(x["explanations"], dtype=float),
                np.array(y["explanations"], dtype=float),
                atol=atol,
            ):
                problems.append(f"{arm} {x['request']}: scores differ beyond {atol}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    p.add_argument("--atol", type=float, default=1e-5)
    args = p.parse_args()
    if args.compare:
        a, b = (json.loads(f.read_text()) for f in args.compare)
        problems = compare(a, b, args.atol)
        answers = sum(len(v) for v in a.values())
        print(f"{answers} answers compared: {len(problems)} differ")
        for line in problems[:20]:
            print(" ", line)
        return 1 if problems else 0
    if not (args.config and args.out):
        p.error("--config and --out, or --compare BEFORE AFTER")
    args.out.write_text(json.dumps(snapshot(args.config, args.k)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
