"""The ``mrse`` command line: the user's front door. Each sub-command calls one package function."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from mrse.logs import setup_logging
from mrse.retrieval.recommenders import RECOMMEND_PEERS
from mrse.training.config import PRESETS, VARIANTS

logger = logging.getLogger("mrse")


class UsageError(ValueError):
    """The command line asks for something inconsistent."""


def _report(result: dict, path: Path) -> None:
    """Write a benchmark result as JSON and show it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    path.write_text(text)
    print(text)


def _cmd_eval(args: argparse.Namespace) -> int:
    from mrse.data import load_dataset
    from mrse.encoders.cache import FeatureCache
    from mrse.evaluation.harness import evaluate
    from mrse.evaluation.report import format_slices, format_table, write_json
    from mrse.jobs.plots import plot_results
    from mrse.retrieval.baselines import build_baseline

    if args.task == "recommend" and args.model is None:
        args.model = "all"  # every peer, beside the run if there is one
    if (args.model is None) == (args.run is None) and args.task != "recommend":
        raise UsageError("give exactly one of --model (a baseline) and --run (a trained run)")
    if (args.hide or args.retrieval != "dense") and args.run is None:
        raise UsageError("--hide and --retrieval apply to a trained run (--run)")
    peers = {"similar": ("text-encoder", "photo-encoder", "both-encoders"),
             "photo": ("photo-encoder",),
             "recommend": RECOMMEND_PEERS}.get(args.task, ("bm25", "dense"))  # fmt: skip
    if args.model is not None and args.model not in (
        *peers,
        *(("all",) if args.task == "recommend" else ()),
    ):
        raise UsageError(f"--task {args.task} compares --run with --model {' or '.join(peers)}")
    dataset = load_dataset(args.data)
    with FeatureCache.open_default(args.cache_dir) as cache:
        if args.task in ("similar", "photo", "recommend"):
            task = {"similar": _similar, "photo": _photo, "recommend": _recommend}[args.task]
            result = task(args, dataset, cache)
            _report(result, Path(args.out))
            if args.task == "recommend":
                from mrse.jobs.plots import plot_recommend

                plot_recommend(result, Path(args.out).with_suffix(".png"))
            return 0
        if args.run is not None:
            from mrse.retrieval.model import ModelRetriever
            from mrse.training.checkpoint import load_run

            retriever = ModelRetriever(
                load_run(args.run), dataset, cache, args.query_encoder, hide=args.hide
            )
            if args.retrieval == "hybrid":
                from mrse.retrieval.hybrid import HybridRetriever

                retriever = HybridRetriever(retriever)
        else:
            retriever = build_baseline(args.model, dataset, cache)
        if args.task == "mix":
            from mrse.evaluation.query_mix import evaluate_mix, format_mix

            mix = evaluate_mix(dataset, retriever, per_class=args.per_class, seed=args.seed)
            _report(mix.to_json(), Path(args.out))
            print(format_mix([mix]))
            return 0
        result = evaluate(dataset, retriever)
    write_json(result, args.out)
    plot_results([result], Path(args.out).with_suffix(".png"))
    print(format_table([result]))
    print(format_slices([result]))
    return 0


def _similar(args: argparse.Namespace, dataset, cache) -> dict:
    """``mrse eval --task similar``: more like this (``mrse.evaluation.similar``)."""
    from mrse.evaluation.similar import evaluate_similar, peer_vectors, similar_cases

    if args.run is not None:
        from mrse.retrieval.model import ModelRetriever
        from mrse.training.checkpoint import load_run

        retriever = ModelRetriever(load_run(args.run), dataset, cache, hide=args.hide)
        ids, vectors, name = retriever.catalog.item_ids, retriever.items.numpy(), retriever.name
    else:
        from mrse.encoders.features import encode_items

        feats, _ = encode_items(dataset, cache)
        ids, vectors, name = feats.item_ids, peer_vectors(feats, args.model), args.model
    cases = similar_cases(dataset.qrels, ids, seed=args.seed)
    metrics = evaluate_similar(cases, ids, vectors)
    logger.info("%s similar (%d seeds): %s", name, len(cases), metrics)
    return {"dataset": dataset.name, "model": name, "task": "similar", "cases": len(cases),
            "metrics": metrics}  # fmt: skip


def _recommend(args: argparse.Namespace, dataset, cache) -> dict:
    """``mrse eval --task recommend``: the home feed (``mrse.evaluation.recommend``), MRSE
    (``--run``) and the peers (``--model``, ``all`` by default) on the same cases, one table."""
    from mrse.evaluation.recommend import (
        evaluate_recommend,
        fit_events,
        format_recommend,
        recommend_cases,
    )
    from mrse.retrieval.recommenders import Interactions, peer_rankings

    cases = recommend_cases(dataset)
    if not cases:
        raise UsageError(
            f"{dataset.root}: no test query has a shopper and a time, so there is no feed to "
            "measure (--task recommend needs queries.parquet's user_id and ts)"
        )
    inter = Interactions.build(fit_events(dataset.events, cases), dataset.items["item_id"])
    requests = [(c.user_id, c.ts) for c in cases]
    results: dict[str, dict] = {}
    if args.run is not None:
        from mrse.retrieval.feed import FeedRetriever
        from mrse.training.checkpoint import load_run

        feed = FeedRetriever(load_run(args.run), dataset, cache, hide=args.hide, mode=args.feed)
        results[feed.name] = evaluate_recommend(cases, feed.rank(inter, requests))
    peers = [] if args.model is None else RECOMMEND_PEERS if args.model == "all" else [args.model]
    photos = None
    if "vbpr" in peers:
        from mrse.encoders.features import encode_items

        photos = encode_items(dataset, cache)[0].image
    for name in peers:
        results[name] = evaluate_recommend(
            cases, peer_rankings(name, inter, requests, photo_features=photos)
        )
        logger.info("%s recommend: %s", name, results[name]["metrics"])
    print(format_recommend(results))
    return {"dataset": dataset.name, "task": "recommend", "cases": len(cases),
            "models": results,
            "metrics": next(iter(results.values()))["metrics"]}  # fmt: skip


def _photo(args: argparse.Namespace, dataset, cache) -> dict:
    """``mrse eval --task photo``: shop by photo (``mrse.evaluation.photo``)."""
    import random

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from mrse.encoders.features import encode_items
    from mrse.encoders.image import ImageEncoder, preprocess
    from mrse.evaluation.photo import (
        PHOTO_ONLY_METRIC,
        alter_photo,
        evaluate_photo,
        photo_cases,
        photo_only_cases,
        rank_photos,
    )
    from mrse.evaluation.similar import peer_vectors
    from mrse.features.catalog import FeatureStats, centre_unit
    from mrse.features.photo import QUERY_FRAME

    cases, photo = photo_cases(dataset, seed=args.seed)
    alone = photo_only_cases(dataset.items, seed=args.seed)  # items with a photo and no text
    encoder = ImageEncoder()
    features = []  # each photo's QUERY_FRAME, as the server decodes it for the towers and the
    # photo channel; the frozen encoder peer on the centre, as its catalog features are
    frame = QUERY_FRAME if args.run is not None else "centre"
    every = [*cases, *alone]
    for s in tqdm(range(0, len(every), 32), desc="photos", unit="batch", disable=None):
        shots = [alter_photo(photo[c.seed], random.Random(f"{args.seed}:{c.query_id}"))
                 for c in every[s : s + 32]]  # fmt: skip
        features.append(encoder.encode_tensors(
            torch.stack([preprocess(b, (frame,)) for b in shots])))  # fmt: skip
    shots_features = np.concatenate(features) if features else np.zeros((0, encoder.dim))
    if args.run is not None:
        from mrse.features.photo import photo_sketch
        from mrse.models.photo import photo_query_vectors
        from mrse.retrieval.model import ModelRetriever
        from mrse.training.checkpoint import load_run

        run = load_run(args.run)
        retriever = ModelRetriever(run, dataset, cache, hide=args.hide)
        catalog, stats = retriever.catalog, run.featurizer.stats
        queries = photo_query_vectors(run.model, stats, run.featurizer.shape, shots_features)
        sketches = None
        if catalog.sketch is not None:
            whole = photo_sketch(centre_unit(shots_features, stats.image_mean))
            sketches = (catalog.sketch.numpy(), whole)
        ranked = rank_photos(retriever.items.numpy(), queries, sketches=sketches)
        ids, name = catalog.item_ids, retriever.name
    else:
        feats, _ = encode_items(dataset, cache)
        queries = centre_unit(shots_features, FeatureStats.fit(feats).image_mean)
        ranked = rank_photos(peer_vectors(feats, "photo-encoder"), queries)
        ids, name = feats.item_ids, args.model
    metrics = evaluate_photo(cases, ids, ranked[: len(cases)])
    if alone:  # the item itself is all a photo-only case looks for
        metrics[PHOTO_ONLY_METRIC] = evaluate_photo(alone, ids, ranked[len(cases) :])["found@10"]
    logger.info("%s photo (%d photos, %d of items with only a photo): %s", name, len(cases),
                len(alone), metrics)  # fmt: skip
    return {"dataset": dataset.name, "model": name, "task": "photo", "cases": len(cases),
            "photo_only_cases": len(alone), "metrics": metrics}  # fmt: skip


def _cmd_train(args: argparse.Namespace) -> int:
    from mrse.training.config import apply_overrides, load_config
    from mrse.training.trainer import train

    config = load_config(args.model, args.config)
    overrides = {}
    for name in ("epochs", "seed", "max_minutes"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    config = apply_overrides(config, overrides)
    summary = train(
        config,
        Path(args.data),
        Path(args.out),
        name=args.name or args.model,
        resume=args.resume,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from mrse.jobs.ablation import AblationConfig, run_ablation

    run_ablation(
        AblationConfig(
            datasets=tuple(Path(d) for d in args.data),
            variants=tuple(args.variants),
            runs_dir=Path(args.runs),
            out=Path(args.out),
            doc=Path(args.doc) if args.doc else None,
            config=Path(args.config) if args.config else None,
            retrain=args.retrain,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            jobs=args.jobs,
            train=not args.no_train,
        )
    )
    return 0


def _cmd_stream_replay(args: argparse.Namespace) -> int:
    from mrse.data import load_dataset
    from mrse.streaming.producer import ReplayConfig, dataset_events, replay

    events = dataset_events(load_dataset(args.data))
    n = replay(
        events,
        ReplayConfig(
            bootstrap=args.bootstrap,
            topic=args.topic,
            rate=args.rate,
            limit=args.limit,
            encoding=args.encoding,
        ),
    )
    print(f"published {n} events to {args.topic}")
    return 0


def _given(flags: dict) -> dict:
    """``flags`` without the ones not given (None) and without sections left empty: what the
    command line overrides in a process's config."""
    out = {}
    for key, value in flags.items():
        if isinstance(value, dict):
            value = _given(value)
        if value is not None and value != {}:
            out[key] = value
    return out


def _stream_flags(args: argparse.Namespace) -> dict:
    """The stream worker's flags that were given, shaped as its config."""
    return _given({
        "data": args.data, "run": args.run, "cache_dir": args.cache_dir,
        "idle_exit_s": args.idle_exit, "metrics_port": args.metrics_port,
        "worker": {"bootstrap": args.bootstrap, "topic": args.topic,
                   "group_id": args.group_id, "max_batch": args.max_batch},
        "store": {"data_dir": args.feature_dir, "online": args.online, "redis": args.redis,
                  "registry_url": args.registry_url},
    })  # fmt: skip


def _cmd_stream_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from mrse.catalog.listen import CatalogListener
    from mrse.settings import describe, load
    from mrse.streaming.service import StreamServiceConfig, build_worker

    cfg = load(StreamServiceConfig, args.config, "MRSE_STREAM", overrides=_stream_flags(args))
    logger.info("stream worker config: %s", describe(cfg))
    worker = build_worker(cfg)
    worker.new_items = CatalogListener(cfg.worker.bootstrap)  # clicks on items added later
    if cfg.metrics_port is not None:
        from mrse.metrics_http import serve_metrics
        from mrse.streaming.metrics import worker_registry

        serve_metrics(worker_registry(worker.stats), cfg.metrics_port, cfg.metrics_host,
                      cfg.metrics_tls)  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stats = worker.run(stop=stop, idle_exit_s=cfg.idle_exit_s)
    print(
        json.dumps(
            {
                "consumed": stats.consumed,
                "applied": stats.applied,
                "duplicates": stats.duplicates,
                "dead_lettered": dict(stats.dead_lettered),
            }
        )
    )
    return 0


def _catalog_flags(args: argparse.Namespace) -> dict:
    """The catalog worker's flags that were given, shaped as its config."""
    models = None
    if args.model:
        if not all("=" in m for m in args.model):
            raise UsageError("--model takes VERSION=RUN_DIR")
        models = [dict(zip(("version", "run"), m.split("=", 1), strict=True))
                  for m in args.model]  # fmt: skip
    return _given({
        "worker": {"bootstrap": args.bootstrap, "topic": args.topic, "group_id": args.group_id,
                   "max_batch": args.max_batch},
        "models": models, "index": {"root": args.index_root}, "state": args.state,
        "cache_dir": args.cache_dir, "idle_exit_s": args.idle_exit_s,
        "photo_roots": args.photo_root,
    })  # fmt: skip


def _cmd_catalog_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from mrse.catalog.service import ENV_PREFIX, CatalogServiceConfig, build_catalog_worker
    from mrse.settings import describe, load

    cfg = load(CatalogServiceConfig, args.config, ENV_PREFIX, overrides=_catalog_flags(args))
    logger.info("catalog worker config: %s", describe(cfg))
    worker = build_catalog_worker(cfg)
    if cfg.metrics_port is not None:
        from mrse.catalog.metrics import catalog_registry
        from mrse.metrics_http import serve_metrics

        serve_metrics(catalog_registry(worker.stats), cfg.metrics_port, cfg.metrics_host,
                      cfg.metrics_tls)  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stats = worker.run(stop=stop, idle_exit_s=cfg.idle_exit_s)
    print(json.dumps({
        "consumed": stats.consumed, "encoded": stats.encoded, "patched": stats.patched,
        "deleted": stats.deleted, "stale": stats.stale, "dead_lettered": dict(stats.dead_lettered),
    }))  # fmt: skip
    return 0


def _cmd_catalog_publish(args: argparse.Namespace) -> int:
    from mrse.catalog.publish import dataset_upserts, publish, read_jsonl

    if args.file:
        events, errors = read_jsonl(Path(args.file))
        for e in errors:
            logger.error("not published: %s", e)
    else:
        from mrse.data import load_dataset

        events, errors = dataset_upserts(load_dataset(Path(args.data))), []
    sent = publish(args.bootstrap, args.topic, events)
    print(json.dumps({"published": sent, "invalid": len(errors)}))
    return 1 if errors else 0


def _cmd_stream_bench(args: argparse.Namespace) -> int:
    from mrse.jobs.bench_stream import StreamBenchConfig, run_stream_benchmark

    result = run_stream_benchmark(
        StreamBenchConfig(
            data=Path(args.data),
            work_dir=Path(args.work_dir),
            bootstrap=args.bootstrap,
            rate=args.rate,
            steady_events=args.events,
        )
    )
    _report(result, Path(args.out))
    return 0


def _cmd_bench_feed(args: argparse.Namespace) -> int:
    from mrse.jobs.bench_feed import FeedBenchConfig, run_feed_benchmark

    result = run_feed_benchmark(
        FeedBenchConfig(
            data=Path(args.data),
            run=Path(args.run),
            work_dir=Path(args.work_dir),
            shoppers=args.shoppers,
        )  # fmt: skip
    )
    _report(result, Path(args.out))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from mrse.index.build import IndexConfig, build_index

    summary = build_index(
        Path(args.data),
        Path(args.run),
        IndexConfig(backend=args.backend, root=Path(args.root), url=args.url),
        version=args.version,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from mrse.serving.app import load_serve_config, serve
    from mrse.settings import describe

    cfg = load_serve_config(args.config)
    logger.info("serving config: %s", describe(cfg))
    if cfg.workers > 1:
        from mrse.serving.workers import serve_workers

        return serve_workers(cfg)
    asyncio.run(serve(cfg))
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from mrse.jobs.encode import encode_shard

    summary = encode_shard(
        Path(args.data), Path(args.cache_dir) if args.cache_dir else None, not args.no_images
    )
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from mrse.data.importer import ImportConfig, import_catalog

    config = ImportConfig(
        catalog=Path(args.catalog),
        out=Path(args.out),
        interactions=Path(args.interactions) if args.interactions else None,
        queries=Path(args.queries) if args.queries else None,
        qrels=Path(args.qrels) if args.qrels else None,
        image_root=Path(args.image_root) if args.image_root else None,
        columns=dict(kv.split("=", 1) for kv in args.column),
    )
    dataset = import_catalog(config)
    print(f"imported {len(dataset.items)} items and {len(dataset.events)} events into {args.out}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from mrse.data.sample import SampleConfig, make_sample

    make_sample(
        SampleConfig(
            source=Path(args.source),
            out=Path(args.out),
            queries=args.queries,
            max_items=args.max_items,
            seed=args.seed,
        )
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mrse.demo import DemoConfig, run_demo

    data = tuple(Path(d) for d in args.data)
    run_demo(
        DemoConfig(
            data=data,
            out=Path(args.out),
            cache_dir=args.cache_dir,
            serve=not args.no_serve,
            max_queries=args.queries,
        )
    )
    return 0


def _cmd_ab_report(args: argparse.Namespace) -> int:
    from mrse.experiments.exposures import ab_report
    from mrse.jobs.ab_page import format_unit_report, write_ab_page

    weights = None
    if args.weights:
        try:
            weights = {a: float(w) for a, w in (x.split("=", 1) for x in args.weights.split(","))}
        except ValueError as exc:
            raise UsageError("--weights takes arm=weight,arm=weight") from exc
    result = ab_report(args.bootstrap, args.experiment, args.exposures_topic,
                       args.clicks_topic, args.window, weights, args.control)  # fmt: skip
    print(format_unit_report(result["analysis"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.html:
        print(f"page: {write_ab_page(result['analysis'], Path(args.html))}")
    return 0


def _cmd_ab_simulate(args: argparse.Namespace) -> int:
    from mrse.jobs.ab_page import plot_simulation
    from mrse.jobs.ab_simulate import SimulateConfig, run_simulation

    result = run_simulation(SimulateConfig(
        data=Path(args.data), control=Path(args.control), treatment=Path(args.treatment),
        out=Path(args.out), repetitions=args.repetitions, seed=args.seed,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    ))  # fmt: skip
    _report({k: v for k, v in result.items() if k != "example_report"}, Path(args.out))
    plot_simulation(result, Path(args.out).with_suffix(".png"))
    return 0


def _cmd_bench_serving(args: argparse.Namespace) -> int:
    from mrse.jobs.bench_serving import ServeBenchConfig, run_serve_benchmark
    from mrse.jobs.plots import plot_serve_benchmark

    result = run_serve_benchmark(
        ServeBenchConfig(
            data=Path(args.data),
            run=Path(args.run),
            work_dir=Path(args.work_dir),
            k=args.k,
            duration_s=args.duration,
            concurrency=tuple(int(c) for c in args.clients.split(",")),
            max_concurrency=args.max_concurrency,
            workers=args.workers,
            ngram_run=Path(args.ngram_run) if args.ngram_run else None,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        ),
        only_calls=args.only_calls,
    )
    _report(result, Path(args.out))
    if not args.only_calls:
        plot_serve_benchmark(result, Path(args.out).with_suffix(".png"))
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    from mrse.experiments.store import ExperimentStore
    from mrse.jobs.rollout import register_version, set_arm

    store = ExperimentStore(args.experiments_url)
    try:
        out: dict = {}
        if args.version and args.run:
            out["index_ready_s"] = round(
                register_version(store, args.version, Path(args.run), args.timeout), 1
            )
        if args.experiment and args.arm:
            set_arm(store, args.experiment, args.arm, args.version, args.weight, args.drop)
            out["experiment"] = args.experiment
    finally:
        store.close()
    print(json.dumps(out))
    return 0


def _cmd_bench_replica(args: argparse.Namespace) -> int:
    from mrse.jobs.bench_replica import run_replica_benchmark
    from mrse.jobs.bench_scale import ScaleBenchConfig

    sizes = tuple(int(float(x)) for x in args.items.split(","))
    cfg = ScaleBenchConfig(Path(args.data), Path(args.run), Path(args.work_dir), sizes=sizes)
    _report(run_replica_benchmark(cfg, args.changes, args.replay_max), Path(args.out))
    return 0


def _cmd_bench_scale(args: argparse.Namespace) -> int:
    from mrse.jobs.bench_scale import ScaleBenchConfig, markdown_table, run_scale_benchmark
    from mrse.jobs.plots import plot_scale

    sizes = tuple(int(float(x)) for x in args.items.split(","))
    import yaml

    edge = yaml.safe_load(args.edge) if args.edge else {}
    cfg = ScaleBenchConfig(
        Path(args.data), Path(args.run), Path(args.work_dir), sizes=sizes, edge=edge,
        stages=tuple(args.stages.split(",")), mining=tuple(args.mining.split(",")),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )  # fmt: skip
    result = run_scale_benchmark(cfg)
    out = Path(args.out)
    _report(result, out)
    out.with_suffix(".md").write_text(markdown_table(result) + "\n")
    if len(sizes) > 1:
        plot_scale(result, out.with_suffix(".png"))
    return 0


def _cmd_bench_catalog(args: argparse.Namespace) -> int:
    from mrse.jobs.bench_catalog import run_catalog_benchmark

    result = run_catalog_benchmark(
        Path(args.data), Path(args.run), Path(args.work_dir), args.patches, args.new_items,
        args.burst_patches, args.burst_new,
    )  # fmt: skip
    _report(result, Path(args.out))
    return 0


def _cmd_bench_encoders(args: argparse.Namespace) -> int:
    from mrse.jobs.bench_encoders import benchmark_encoders

    result = benchmark_encoders(Path(args.data), n=args.n)
    _report(result, Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrse", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache directory (default $MRSE_CACHE_DIR or ~/.cache/mrse)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="evaluate a baseline or a trained run on a dataset")
    p.add_argument("--data", required=True, help="dataset directory in the benchmark layout")
    p.add_argument(
        "--model",
        choices=[
            "bm25",
            "dense",
            "text-encoder",
            "photo-encoder",
            "both-encoders",
            *RECOMMEND_PEERS,
            "all",
        ],
        help="a baseline (search, mix), a frozen-encoder peer (similar, photo) or a "
        "recommender (recommend; default there: all of them, beside --run if given)",
    )
    p.add_argument("--run", help="a run directory written by `mrse train`")
    p.add_argument(
        "--query-encoder",
        choices=["minilm", "minilm-int8"],
        default="minilm",
        help="query text encoder for --run: as trained (fp32) or as served (int8 ONNX)",
    )
    p.add_argument(
        "--hide",
        choices=["photo", "text", "judged-text", "random"],
        help="for --run: evaluate as if no item had a photo / any text, as if the judged items "
        "had no text, or a seeded catalog in flux: text gone from half, photos from a tenth",
    )
    p.add_argument(
        "--task",
        choices=["search", "mix", "similar", "photo", "recommend"],
        default="search",
        help="search: the dataset's test queries; mix: also names, fragments, misspellings, "
        "brand + type and descriptions generated from the catalog, metrics per class; "
        "similar: more like this, one relevant item of a test query in, the others wanted; "
        "photo: that item's photo, altered as a shopper's would be, in; "
        "recommend: the home feed, each test query's shopper at its time with no query",
    )
    p.add_argument(
        "--retrieval",
        choices=["dense", "hybrid"],
        default="dense",
        help="for --run: the towers alone, or fused with the lexical channel as served",
    )
    p.add_argument("--per-class", type=int, default=400, help="--task mix: queries per class")
    p.add_argument(
        "--feed",
        choices=["interests", "vector"],
        default="interests",
        help="--task recommend with --run: the served feed (the shopper's recent items as "
        "interests) or the query tower's one vector for nothing typed",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="--task mix / similar: which queries / seeds are drawn"
    )
    p.add_argument("--out", required=True, help="JSON file to write (a .png plot goes beside it)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("train", help="train MRSE or a baseline/ablation tower on a dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="mrse", choices=list(PRESETS))
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--config", help="YAML file overriding the preset (see configs/)")
    p.add_argument("--name", help="run name (default: the --model preset)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--resume", action="store_true", help="continue from out/train_state.pt")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("ablation", help="train + evaluate text-tower, MRSE and its ablations")
    p.add_argument("--data", nargs="+", required=True, help="dataset directories")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--runs", default="runs", help="where run directories go (reused if complete)")
    p.add_argument("--out", default="results/ablation")
    p.add_argument(
        "--doc",
        default="docs/benchmarks.md",
        help="doc whose ablation section to rewrite ('' for none)",
    )
    p.add_argument("--config", help="YAML overrides applied to every variant")
    p.add_argument("--retrain", action="store_true", help="retrain even if a complete run exists")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="evaluate the complete runs there are and train nothing (missing ones are left out)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trainings side by side, one process each (set threads in --config to cores/jobs)",
    )
    p.set_defaults(func=_cmd_ablation)

    p = sub.add_parser("index", help="encode a catalog with a run and write the vector index")
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--version", help="model version name (default: the run's name)")
    p.add_argument("--backend", choices=["edge", "qdrant"], default="edge")
    p.add_argument("--root", default=".mrse-index", help="directory of the embedded indexes")
    p.add_argument("--url", help="Qdrant server URL for --backend qdrant")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("serve", help="run the gRPC search server (see configs/serve.yaml)")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("ab", help="experiments: reports and the simulator")
    ab = p.add_subparsers(dest="ab_command", required=True)
    q = ab.add_parser("report", help="per-arm click-through from exposures and clicks (Kafka)")
    q.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port")
    q.add_argument("--experiment", required=True)
    q.add_argument("--exposures-topic", default="mrse.exposures")
    q.add_argument("--clicks-topic", default="mrse.clicks")
    q.add_argument(
        "--window", type=float, default=3600.0, help="seconds after an exposure a click counts"
    )
    q.add_argument("--weights", help="the configured split, arm=weight,... (SRM check)")
    q.add_argument("--control", help="the arm the others are compared with")
    q.add_argument("--out", help="also write the report as JSON here")
    q.add_argument("--html", help="also write the report as an HTML page with plots here")
    q.set_defaults(func=_cmd_ab_report)
    q = ab.add_parser(
        "simulate",
        help="real shoppers, real arms through the server, simulated clicks: false positives "
        "under peeking, SRM, CUPED, units to detect by A/B test and by interleaving",
    )
    q.add_argument("--data", required=True)
    q.add_argument("--control", required=True, help="the control arm's run directory")
    q.add_argument("--treatment", required=True, help="the treatment arm's run directory")
    q.add_argument("--repetitions", type=int, default=200, help="A/A experiments simulated")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", required=True, help="JSON (a .png of the results goes beside it)")
    q.set_defaults(func=_cmd_ab_simulate)

    p = sub.add_parser("stream", help="clickstream: replay events, run the stream worker")
    stream = p.add_subparsers(dest="stream_command", required=True)
    q = stream.add_parser("replay", help="publish a dataset's events to Kafka in time order")
    q.add_argument("--data", required=True)
    q.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port")
    q.add_argument("--topic", default="mrse.clicks")
    q.add_argument("--rate", type=float, default=0.0, help="events/s (0: as fast as possible)")
    q.add_argument("--limit", type=int)
    q.add_argument("--encoding", choices=["json", "proto"], default="json")
    q.set_defaults(func=_cmd_stream_replay)
    q = stream.add_parser("worker", help="consume clicks and keep user profiles fresh in Feast")
    # every setting also comes from --config FILE or MRSE_STREAM__* variables; flags win
    q.add_argument("--config", help="YAML with the fields of StreamServiceConfig")
    q.add_argument("--data", help="the catalog (dataset directory)")
    q.add_argument("--run", help="the serving model's run (its feature statistics)")
    q.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port")
    q.add_argument("--topic", help="default mrse.clicks")
    q.add_argument("--group-id", help="default mrse-profile-worker")
    q.add_argument("--max-batch", type=int, help="default 1000")
    q.add_argument("--idle-exit", type=float, help="exit after this many idle seconds")
    q.add_argument("--feature-dir", help="Feast data directory (default .mrse-features)")
    q.add_argument("--online", choices=["sqlite", "redis"], help="default sqlite")
    q.add_argument("--redis", help="host:port (default localhost:6379)")
    q.add_argument("--registry-url", help="SQL registry URL (default: a file registry)")
    q.add_argument(
        "--metrics-port", type=int, help="Prometheus metrics on http://127.0.0.1:PORT/metrics"
    )
    q.set_defaults(func=_cmd_stream_worker)
    q = stream.add_parser("bench", help="worker throughput and freshness")
    q.add_argument("--data", required=True)
    q.add_argument("--bootstrap", help="a Kafka cluster (default: start the embedded broker)")
    q.add_argument("--rate", type=float, default=2000.0, help="steady replay rate, events/s")
    q.add_argument("--events", type=int, default=20_000, help="events in the steady replay")
    q.add_argument("--work-dir", default="results/stream-bench")
    q.add_argument("--out", default="results/stream-bench.json")
    q.set_defaults(func=_cmd_stream_bench)

    p = sub.add_parser("catalog", help="live catalog: publish item changes, run the catalog worker")
    catalog = p.add_subparsers(dest="catalog_command", required=True)
    q = catalog.add_parser("publish", help="publish catalog events (JSONL) or a whole dataset")
    q.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="JSONL, one mrse.v1.CatalogEvent (JSON form) per line")
    src.add_argument("--data", help="a dataset directory: every item as an upsert")
    q.add_argument("--topic", default="mrse.catalog")
    q.set_defaults(func=_cmd_catalog_publish)
    q = catalog.add_parser("worker", help="keep every model version's index equal to the catalog")
    # every setting also comes from --config FILE or MRSE_CATALOG__* variables; flags win
    q.add_argument("--config", help="YAML with the fields of CatalogServiceConfig")
    q.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port")
    q.add_argument("--topic", help="default mrse.catalog")
    q.add_argument("--group-id", help="default mrse-catalog-worker")
    q.add_argument("--max-batch", type=int, help="default 500")
    q.add_argument("--model", action="append", help="VERSION=RUN_DIR (repeat per version)")
    q.add_argument("--index-root", help="Edge index root (default .mrse-index)")
    q.add_argument("--state", help="item state file (default .mrse-catalog/state.sqlite)")
    q.add_argument("--photo-root", action="append", help="photos may be read under this dir")
    q.add_argument("--cache-dir", help="the encoders' feature cache")
    q.add_argument("--idle-exit", dest="idle_exit_s", type=float, help="exit after idle seconds")
    q.set_defaults(func=_cmd_catalog_worker)

    p = sub.add_parser(
        "encode",
        help="encode a catalog's texts and photos into the feature cache (resumable; sharded "
        "under torchrun: trainers/encode.py)",
    )
    p.add_argument("--data", required=True)
    p.add_argument("--no-images", action="store_true", help="text only")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("import", help="turn your own catalog (CSV/JSONL) into the dataset layout")
    p.add_argument("--catalog", required=True, help="CSV or JSONL with one item per row")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--interactions", help="CSV or JSONL interaction log (user, item, ts, ...)")
    p.add_argument("--queries", help="CSV or JSONL test queries (qid, query, user_id, ts)")
    p.add_argument("--qrels", help="CSV or JSONL judgements (qid, item_id, relevance)")
    p.add_argument("--image-root", help="directory that relative image paths are relative to")
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="OURS=YOURS",
        help="map a layout column to your column name, e.g. item_id=sku (repeatable)",
    )
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("sample", help="cut a small, self-consistent sample from a dataset")
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--queries", type=int, default=40)
    p.add_argument("--max-items", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("demo", help="the main job on a dataset (default: the bundled sample)")
    p.add_argument(
        "--data",
        nargs="+",
        default=["data/sample/hm", "data/sample/myntra"],
        help="one or more dataset directories (default: the bundled samples)",
    )
    p.add_argument("--out", default="results/demo")
    p.add_argument("--queries", type=int, default=50, help="example searches (judged queries)")
    p.add_argument(
        "--no-serve", action="store_true", help="baselines only: no training, index or server"
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("rollout", help="ship a model version or change arms with no restart")
    p.add_argument("--experiments-url", required=True, help="the experiments database")
    p.add_argument("--version", help="the model version to ship")
    p.add_argument("--run", help="its run directory (registers the version, waits for its index)")
    p.add_argument("--experiment", help="the experiment whose arm changes")
    p.add_argument("--arm", help="the arm to point at --version, reweight, add or --drop")
    p.add_argument("--weight", type=float, help="the arm's new weight")
    p.add_argument("--drop", action="store_true", help="remove the arm")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the index")
    p.set_defaults(func=_cmd_rollout)
    p = sub.add_parser("bench-catalog", help="catalog change -> search latency and throughput")
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True, help="the served model's run directory")
    p.add_argument("--out", default="results/catalog-bench.json")
    p.add_argument("--work-dir", default="results/catalog-bench")
    p.add_argument("--patches", type=int, default=200, help="patches timed one at a time")
    p.add_argument("--new-items", type=int, default=20, help="new items timed one at a time")
    p.add_argument("--burst-patches", type=int, default=20_000)
    p.add_argument("--burst-new", type=int, default=100)
    p.set_defaults(func=_cmd_bench_catalog)
    p = sub.add_parser("bench-feed", help="a click through Kafka -> the feed that reflects it")
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True, help="the served model's run directory")
    p.add_argument("--out", default="results/feed-bench.json")
    p.add_argument("--work-dir", default="results/feed-bench")
    p.add_argument("--shoppers", type=int, default=200, help="shoppers timed, one at a time")
    p.set_defaults(func=_cmd_bench_feed)
    p = sub.add_parser("bench-scale", help="cost curves on synthetic catalogs of N items")
    p.add_argument("--data", required=True, help="the real dataset the catalogs grow from")
    p.add_argument("--run", required=True, help="the model run that indexes and serves")
    p.add_argument("--items", default="25000,250000,1000000", help="catalog sizes, comma-separated")
    p.add_argument("--stages", default="build,serve,train", help="which measurements to run")
    p.add_argument("--edge", help="Edge index options as YAML, e.g. '{quantization: int8}'")
    p.add_argument("--mining", default="memory,index", help="training miners (first: reported)")
    p.add_argument("--work-dir", default="results/scale-bench")
    p.add_argument("--out", default="results/scale-bench.json")
    p.set_defaults(func=_cmd_bench_scale)
    p = sub.add_parser("bench-replica", help="a new replica and a rollout from snapshots, by size")
    p.add_argument("--data", required=True, help="the real dataset the catalogs grow from")
    p.add_argument("--run", required=True, help="the model run that indexes and serves")
    p.add_argument("--items", default="25000,250000,1000000", help="catalog sizes, comma-separated")
    p.add_argument("--changes", type=int, default=1000, help="index writes after the snapshot")
    p.add_argument("--replay-max", type=int, default=25_000,
                   help="up to this size, also roll out without a snapshot")  # fmt: skip
    p.add_argument("--work-dir", default="results/scale-bench", help="bench-scale's: its shards")
    p.add_argument("--out", default="results/replica-bench.json")
    p.set_defaults(func=_cmd_bench_replica)
    p = sub.add_parser("bench-encoders", help="measure text and image encoder throughput")
    p.add_argument("--data", required=True)
    p.add_argument("--n", type=int, default=512, help="items to encode per modality")
    p.add_argument("--out", default="results/encoder-throughput.json")
    p.set_defaults(func=_cmd_bench_encoders)
    p = sub.add_parser("bench-serving", help="closed-loop gRPC load: latency, QPS, stage split")
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True, help="the model run to serve")
    p.add_argument("--k", type=int, default=100, help="results per request")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    p.add_argument("--clients", default="1,2,4,6,8,12,16,32", help="concurrency levels")
    p.add_argument("--max-concurrency", type=int, default=32, help="server: requests in flight")
    p.add_argument(
        "--workers", type=int, default=2, help="also measure this many server processes (1: skip)"
    )
    p.add_argument("--ngram-run", help="also measure a run trained with `--model ngram-query`")
    p.add_argument(
        "--only-calls",
        action="store_true",
        help="only every call with one client: Search on a dense and a hybrid arm (in "
        "alternation), SimilarItems, SearchByPhoto, Recommend",
    )
    p.add_argument("--work-dir", default="results/serve-bench")
    p.add_argument("--out", default="results/serve-bench.json")
    p.set_defaults(func=_cmd_bench_serving)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from mrse.data.dataset import DataValidationError
    from mrse.evaluation.harness import EvaluationError
    from mrse.features.store import StoreAuthError
    from mrse.kafka_client import KafkaUnavailable
    from mrse.settings import ConfigError
    from mrse.training.checkpoint import RunError

    try:
        return int(args.func(args) or 0)
    except (
        ConfigError, DataValidationError, EvaluationError, RunError, StoreAuthError, UsageError,
        KafkaUnavailable,
    ) as exc:  # fmt: skip
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
