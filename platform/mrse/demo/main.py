"""`make demo`: the platform end to end on one machine, on the embedded defaults.

1. encode each catalog (cached) and score the baselines (BM25, zero-shot dense);
2. train a small MRSE model and the text-only baseline tower on the serving dataset;
3. build one Qdrant Edge index per model version;
4. start the embedded broker, the stream and catalog workers and the gRPC server (exposures
   logged to Kafka; the server follows the catalog worker's index writes);
5. replay the clickstream into the online feature store;
6. run the judged example queries through gRPC, both arms side by side, shoppers click;
7. live catalog: a price cut, a sell-out and a new item with its photo, served with no restart;
8. searches by product name (exact, in part, misspelt, the new item's), both arms;
9. an interleaved experiment: the shoppers ask again through both arms merged;
10. the A/B and interleaving reports from the exposure and click topics (per shopper, with the
    decision line); the HTML pages; a summary.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from mrse.data import load_dataset
from mrse.demo.baselines import evaluate_baselines
from mrse.demo.catalog import show_live_catalog
from mrse.demo.feed import format_feed, show_feed
from mrse.demo.interleaved import run_interleaved
from mrse.demo.live import ArmModel, LiveStack
from mrse.demo.looks import format_looks, show_looks
from mrse.demo.names import format_name_searches, name_searches
from mrse.demo.page import format_showcases, write_page
from mrse.demo.searches import arm_means, run_searches
from mrse.evaluation.report import format_table
from mrse.experiments.exposures import ab_report
from mrse.experiments.report import ArmReport, format_ab_table
from mrse.index.build import IndexConfig, build_index
from mrse.jobs.ab_page import format_unit_report, write_ab_page
from mrse.streaming.producer import ReplayConfig, dataset_events, replay
from mrse.training.config import apply_overrides, load_config
from mrse.training.trainer import train

logger = logging.getLogger(__name__)

# A small model that trains in seconds on the bundled sample (and within ``max_minutes`` on a
# full dataset). Profile dropout keeps the query tower from leaning on a profile alone when a
# catalog has few searches per shopper.
DEMO_TRAINING = {
    "model": {
        "dim": 64,
        "hidden": 128,
        "sparse_dim": 32,
        "ngram_buckets": 16384,
        "recent_items": 10,
        "profile_dropout": 0.5,
    },
    "loss": {"random_negatives": 256, "hard_negatives": 4, "hard_pool": 32},
    "profile": {"recent_items": 10},
    "batch_size": 32,
    "epochs": 40,
    "patience": 10,
    "max_minutes": 2.0,
}
# (arm, preset, model version, feature service, retrieval): the MRSE arm fuses the lexical
# channel (mrse.index.hybrid), as configs/serve.yaml serves it
ARMS = (
    ("control", "text-tower", "text-tower-v1", "text_tower_v1", "dense"),
    ("mrse", "mrse", "mrse-v1", "mrse_v1", "hybrid"),
)
EXPERIMENT = "search-demo"
STEPS = 12


@dataclass(frozen=True)
class DemoConfig:
    data: tuple[Path, ...]
    out: Path
    cache_dir: str | Path | None = None
    serve: bool = True  # steps 2-12 (the live stack); False: baselines only
    max_queries: int = 50  # example searches
    k: int = 10


def _step(n: int, what: str) -> None:
    logger.info("[%d/%d] %s", n, STEPS, what)


def serving_dataset(data: tuple[Path, ...]) -> Path:
    """The first dataset whose test queries come from known shoppers (else the first)."""
    for root in data:
        queries = load_dataset(root).queries
        if "user_id" in queries and queries["user_id"].notna().any():
            return root
    return data[0]


def train_arms(data: Path, out: Path, cache_dir: Path | None) -> tuple[tuple[ArmModel, ...], dict]:
    arms, summaries = [], {}
    for arm, preset, version, service, retrieval in ARMS:
        config = apply_overrides(load_config(preset), DEMO_TRAINING)
        run = out / "runs" / preset
        s = train(config, data, run, name=preset, cache_dir=cache_dir)
        arms.append(ArmModel(arm, version, service, run, retrieval))
        summaries[arm] = {
            "version": version,
            "run": str(run),
            "best_val_ndcg@10": round(s["best_val_ndcg@10"], 4),
            "seconds": s["seconds"],
        }
    return tuple(arms), summaries


def serve_and_search(config: DemoConfig, data: Path) -> dict:
    """Steps 2-12 on one dataset; returns their part of the summary."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else None
    dataset = load_dataset(data)
    live_dir = config.out / "live"
    _step(2, f"training the text-only and the MRSE towers on {dataset.name}")
    arms, models = train_arms(data, config.out, cache_dir)
    _step(3, "building one Qdrant Edge index per model version")
    index = IndexConfig(root=live_dir / "index")
    # fresh shards: items a previous run's catalog step added must not linger (`mrse index`
    # keeps them, as the live catalog's; the demo starts its catalog from the dataset)
    shutil.rmtree(index.root, ignore_errors=True)
    indexes = [build_index(data, a.run, index, a.version, cache_dir) for a in arms]
    _step(4, "starting the embedded broker, the stream worker and the gRPC server")
    mrse_run = next(a.run for a in arms if a.arm == "mrse")
    with LiveStack(data, arms, EXPERIMENT, index, live_dir, mrse_run, cache_dir) as stack:
        _step(5, "replaying the clickstream into the online feature store")
        events = dataset_events(dataset)
        replay(events, ReplayConfig(bootstrap=stack.broker.bootstrap))
        stack.wait_applied(len(events))
        users = {e.user_id for e in events}
        stored = stack.engine.profiles.read(users, with_event_ids=False)
        online = sum(p is not None for p in stored.values())
        print(
            f"{dataset.name}: streamed {stack.worker.stats.applied} events through the embedded "
            f"broker; {online}/{len(users)} shopper profiles are online in the feature store"
        )
        _step(6, f"example searches through gRPC on {stack.server.target}")
        judged = dataset.qrels_by_query
        queries = dataset.queries[dataset.queries["qid"].isin(judged)].head(config.max_queries)
        with grpc.insecure_channel(stack.server.target) as channel:
            showcases = run_searches(
                channel,
                queries,
                judged,
                tuple(a.arm for a in arms),
                stack.engine.profiles,
                stack.broker.bootstrap,
                config.k,
            )
        _step(7, "live catalog: a price cut, a sell-out and a new item while the server runs")
        with grpc.insecure_channel(stack.server.target) as channel:
            catalog = show_live_catalog(
                channel, stack.broker.bootstrap, dataset, live_dir / "catalog" / "photos",
                EXPERIMENT,
            )  # fmt: skip
        _step(8, "searches by product name: exact, in part, misspelt, and the new item's")
        new = (("new item", catalog["new_item_title"], ("demo-new-item",)),)
        with grpc.insecure_channel(stack.server.target) as channel:
            names = name_searches(channel, dataset, tuple(a.arm for a in arms), EXPERIMENT,
                                  extra=new)  # fmt: skip
        print(format_name_searches(names, tuple(a.arm for a in arms)))
        _step(9, "more like this and shop by photo")
        with grpc.insecure_channel(stack.server.target) as channel:
            looks = show_looks(channel, dataset, tuple(a.arm for a in arms), EXPERIMENT)
        titles = dict(zip(dataset.items["item_id"], dataset.items["title"], strict=True))
        print(format_looks(looks, titles))
        _step(10, "a shopper's home feed, then a few clicks through Kafka, then the feed again")
        with grpc.insecure_channel(stack.server.target) as channel:
            feed = show_feed(channel, stack.broker.bootstrap, dataset, EXPERIMENT)
        print(format_feed(feed))
        _step(11, "an interleaved experiment: the same shoppers, both arms merged by team draft")
        with grpc.insecure_channel(stack.server.target) as channel:
            il_clicks = run_interleaved(channel, queries, judged, stack.interleaved.name,
                                        stack.broker.bootstrap, config.k)  # fmt: skip
        _step(12, "A/B and interleaving reports from the exposure and click topics; the pages")
        stack.exposures.flush()
        ab = ab_report(stack.broker.bootstrap, EXPERIMENT, control="control")
        interleaved = ab_report(stack.broker.bootstrap, stack.interleaved.name)
    print("\n" + format_unit_report(ab["analysis"]))
    print("\n" + format_unit_report(interleaved["analysis"]))
    ab_page = write_ab_page(ab["analysis"], config.out / "ab.html")
    write_ab_page(interleaved["analysis"], config.out / "interleaved.html")
    reports = [ArmReport(**a) for a in ab["arms"]]
    means = arm_means(showcases)
    page = write_page(
        config.out / "search.html", dataset.name, dataset.items, showcases, means, reports,
        models, names, looks, feed,
    )  # fmt: skip
    print(format_showcases(showcases, dataset.items))
    print(f"\nboth arms on the example queries (k={config.k}):")
    for arm, m in means.items():
        print(
            f"  {arm:<8} nDCG@10 {m['ndcg@10']:.3f}  Recall@10 {m['recall@10']:.3f}  "
            f"HR@10 {m['hr@10']:.3f}  median gRPC latency {m['latency_ms_p50']:.1f} ms"
        )
    print("\n" + format_ab_table(EXPERIMENT, reports))
    print(f"\nthe side-by-side page: {page}")
    return {
        "serving_dataset": dataset.name,
        "models": models,
        "indexes": indexes,
        "streaming": {"events": len(events), "profiles_online": online, "users": len(users)},
        "example_queries": len(showcases),
        "live_catalog": catalog,
        "name_searches": [
            {"class": s.cls, "query": s.query, "ranks": s.ranks, "found_by": s.found_by}
            for s in names
        ],
        "looks": [
            {
                "kind": x.kind,
                "seed": x.seed,
                "results": list(x.results),
                "relevant": x.relevant,
                "rank": x.rank,
                "refused": x.refused,
            }
            for x in looks
        ],  # fmt: skip
        "feed": {
            "user_id": feed.user_id,
            "kind": feed.kind,
            "clicked": list(feed.clicked),
            "before": list(feed.before),
            "after": list(feed.after),
            "seconds": feed.seconds,
            "share_before": feed.share_before,
            "share_after": feed.share_after,
            "personalized": feed.personalized,
            "requests": feed.requests,
        },
        "arms": means,
        "ab_report": ab,
        "interleaved_report": interleaved,
        "interleaved_clicks": il_clicks,
        "page": str(page),
        "ab_page": str(ab_page),
    }


def run_demo(config: DemoConfig) -> Path:
    """Run the demo; returns the summary JSON path."""
    start = time.perf_counter()
    logger.info("demo config: %s", config)
    config.out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir) if config.cache_dir else None
    _step(1, "encoding the catalogs and scoring the baselines")
    results, datasets = evaluate_baselines(config.data, config.out, cache_dir)
    print(format_table(results))
    summary: dict = {"datasets": datasets, "results": [r.to_json() for r in results]}
    if config.serve:
        summary["serving"] = serve_and_search(config, serving_dataset(config.data))
    summary["seconds"] = round(time.perf_counter() - start, 1)
    path = config.out / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    logger.info("demo finished in %.1fs; outputs in %s", summary["seconds"], config.out)
    return path
