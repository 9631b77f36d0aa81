"""The training loop: hybrid loss, mixed and hard negatives, validation-based early stopping.

``train`` reads top-down: prepare the features, split the examples, build the model, then per
epoch ``run_epoch`` (batches from ``loss_batch`` into ``HybridLoss``), validate, keep the best,
stop early. Sharding (``torchrun``) only changes ``build_model`` and the gradient averaging."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mrse.data.dataset import Dataset, load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_query_texts
from mrse.features.catalog import CatalogFeatures, FeatureStats
from mrse.features.featurizer import Featurizer
from mrse.features.lexical import vocabulary
from mrse.features.popularity import popular_items
from mrse.features.queries import QueryFeatures, snapshot_profiles
from mrse.losses.hybrid import HybridLoss, LossBatch
from mrse.metrics.ranking import mean_metrics, query_metrics
from mrse.models.inference import encode_catalog, encode_queries
from mrse.models.towers import text_and_image_views, typed_intent
from mrse.models.two_tower import MRSEModel
from mrse.sampling.hard_negatives import ItemMemory, mine_hard_negatives
from mrse.sampling.negatives import popularity_log_q, uniform_negatives
from mrse.training.checkpoint import QUERY_LOG_SIZE, save_run
from mrse.training.config import TrainConfig
from mrse.training.distributed import (
    agree,
    average_dense_gradients,
    dense_parameters,
    full_state_dict,
    init_from_env,
    shard_model,
)
from mrse.training.examples import (
    Examples,
    build_examples,
    next_item_examples,
    shop_examples,
    split_examples,
    validation_qrels,
)

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class PreparedData:
    """Everything the loop needs, built once."""

    dataset: Dataset
    stats: FeatureStats
    catalog: CatalogFeatures
    examples: Examples
    queries: QueryFeatures

    @cached_property
    def products(self) -> np.ndarray:
        """(N,) the product group of each catalog row (variants share one)."""
        return np.unique(self.catalog.identity, return_inverse=True)[1].astype(np.int64)


def prepare(
    dataset: Dataset, config: TrainConfig, cache: FeatureCache, stats: FeatureStats | None = None
) -> PreparedData:
    if stats is None:
        featurizer, catalog = Featurizer.fit(dataset, cache, config.model)
    else:  # resuming: the statistics the run was started with
        featurizer = Featurizer(config.model, stats)
        catalog = featurizer.catalog(dataset, cache)
    sq = config.shop_queries
    examples = shop_examples(dataset, build_examples(dataset), sq.ratio, sq.classes, config.seed)
    examples = next_item_examples(dataset, examples, config.feed_examples, config.seed)
    queries = example_queries(featurizer, dataset.events, catalog, examples, config, cache)
    return PreparedData(dataset, featurizer.stats, catalog, examples, queries)


def example_queries(
    featurizer: Featurizer,
    events: pd.DataFrame,
    catalog: CatalogFeatures,
    examples: Examples,
    config: TrainConfig,
    cache: FeatureCache,
) -> QueryFeatures:
    """The query side of every example: its text and the shopper's profile at that time (from
    ``events``), as the query tower reads it."""
    profiles = snapshot_profiles(events, catalog, examples.requests(), config.profile)
    vecs = encode_query_texts(list(examples.texts), cache)
    return featurizer.queries(list(examples.texts), vecs, profiles, catalog.index)


def validate(
    model: MRSEModel,
    data: PreparedData,
    items: torch.Tensor,
    reps: list[int],
    rels: list[dict[int, int]],
) -> dict[str, float]:
    """Retrieval metrics of the validation queries over the whole catalog (``items`` (N, D))."""
    outs = encode_queries(model, data.queries, items, np.array(reps))
    q = torch.cat([o.embedding for o in outs])
    top = (q @ items.T).topk(min(500, items.shape[0]), dim=1).indices.tolist()
    per_query = [
        query_metrics([str(r) for r in t], {str(k): v for k, v in rel.items()})
        for t, rel in zip(top, rels, strict=True)
    ]
    return mean_metrics(per_query)


@dataclass
class Split:
    """The examples cut into training and validation, with what the loss needs to know."""

    train: np.ndarray  # example indices
    val: np.ndarray
    val_reps: list[int]  # one example per validation query
    val_rels: list[dict[int, int]]  # its judged items (catalog row -> relevance)
    known: dict[str, set[int]]  # query text -> items bought for it (never its negatives)
    log_q: torch.Tensor  # (N,) log popularity of each item among training positives


@dataclass
class Progress:
    """Where a run stands; saved after every epoch (``--resume``)."""

    next_epoch: int = 0
    best: float = -1.0  # best validation nDCG@10
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)


def train(
    config: TrainConfig,
    data: Path,
    out: Path,
    name: str,
    resume: bool = False,
    cache_dir: Path | None = None,
) -> dict:
    """Train on the events of ``data``; write the best (validation nDCG@10) model to ``out``.

    Runs alone, or sharded when started by ``torchrun`` (see ``mrse.training.distributed``).
    Returns the run summary (also in ``out/run.json``).
    """
    start = time.perf_counter()
    parallel = _start_parallel(config, resume, name)
    with FeatureCache.open_default(cache_dir) as cache:
        prep = prepare(load_dataset(data), config, cache)
    # The wall-clock cap counts training only: encoding a cold cache is not training time, so
    # a cold and a warm cache give the same model (the cap is a safety; epochs and early
    # stopping decide)
    train_start = time.perf_counter()
    if parallel.is_main:
        logger.info(
            "features ready in %.0fs (phase 1 of 2: encoding what the cache lacked, not counted "
            "as training time); phase 2: training on %d examples, up to %d epochs with early "
            "stopping (patience %d)",
            train_start - start, len(prep.examples), config.epochs, config.patience,
        )  # fmt: skip
    gen = seed_everything(config.seed)  # after preparing: a cold cache's encoders draw numbers
    split = split_data(prep, config)
    model, opt, dense = build_model(config, parallel)
    memory = item_memory(config)
    progress = _resume(out / "train_state.pt", model, opt, gen, memory) if resume else Progress()
    steps = steps_per_epoch(len(split.train), config, parallel)
    criterion = HybridLoss(**loss_weights(config))
    # The item index: mined from, attended over, and (after each epoch) validated against.
    index = encode_catalog(model, prep.catalog)
    stopped, examples_seen, train_seconds = "epochs", 0, 0.0
    for epoch in range(progress.next_epoch, config.epochs):
        t0 = time.perf_counter()
        desc = f"{name} epoch {epoch + 1}/{config.epochs}"
        loss, seen = run_epoch(
            model, opt, dense, criterion, prep, split, index, config, parallel, gen, steps, desc,
            memory,
        )  # fmt: skip
        index = encode_catalog(model, prep.catalog)  # serves validation and the next epoch
        train_seconds += time.perf_counter() - t0
        examples_seen += seen
        val = validate(model, prep, index, split.val_reps, split.val_rels)
        _record(progress, epoch, loss, val, name, parallel)
        if agree(val["ndcg@10"] > progress.best, parallel):
            progress.best, progress.best_epoch = val["ndcg@10"], epoch + 1
            state = full_state_dict(parallel) if parallel.sharded else model.state_dict()
            if parallel.is_main:
                info = {"dataset": str(data), "best_epoch": progress.best_epoch, "val": val}
                taught = taught_terms(prep.examples)
                save_run(out, name, config, state, prep.stats, info, taught,
                         frequent_log_queries(prep.dataset.events),
                         popular_items(prep.dataset.events))  # fmt: skip
        progress.next_epoch = epoch + 1
        if not parallel.sharded:
            _save_progress(out / "train_state.pt", model, opt, gen, progress, memory)
        if agree(epoch + 1 - progress.best_epoch >= config.patience, parallel):
            stopped = "early stopping"
            break
        if agree((time.perf_counter() - train_start) / 60 > config.max_minutes, parallel):
            stopped = "time budget"
            logger.error(
                "STOPPED BY THE WALL-CLOCK CAP: %.1f minutes of training reached after epoch %d "
                "of %d, before early stopping; this model depends on how busy the machine was "
                "(raise max_minutes to train to the epochs budget)",
                config.max_minutes, epoch + 1, config.epochs,
            )  # fmt: skip
            break
    summary = {
        "name": name,
        "dataset": str(data),
        "examples": {
            "train": len(split.train),
            "validation": len(split.val),
            "validation_queries": len(split.val_reps),
        },
        "best_epoch": progress.best_epoch,
        "best_val_ndcg@10": progress.best,
        "stopped_by": stopped,
        "history": progress.history,
        "world_size": parallel.world,
        "sharding": parallel.plan,
        "examples_per_s": round(examples_seen / train_seconds, 1) if train_seconds else 0.0,
        "seconds": round(time.perf_counter() - start, 1),
        "prepare_seconds": round(train_start - start, 1),  # features (encoding a cold cache)
    }
    _finish(out, summary, parallel)
    return summary


def _start_parallel(config: TrainConfig, resume: bool, name: str):
    """This process's place in a (possibly) sharded run, checked against the config."""
    parallel = init_from_env()
    if parallel.sharded and resume:
        raise ValueError("--resume is supported for single-process training only")
    if parallel.sharded and config.batch_size < 2 * parallel.world:
        raise ValueError(
            f"batch_size must be >= {2 * parallel.world} for {parallel.world} processes"
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    if parallel.is_main:
        logger.info("training %s with config %s", name, json.dumps(config.to_dict()))
    return parallel


def frequent_log_queries(events: pd.DataFrame) -> dict[str, int]:
    """The event log's ``QUERY_LOG_SIZE`` most frequent queries and their counts (what a
    server warms its query cache with)."""
    counts = events["query"].dropna().astype(str).str.strip()
    counts = counts[counts != ""].value_counts().head(QUERY_LOG_SIZE)
    return {str(q): int(n) for q, n in counts.items()}


def taught_terms(examples: Examples) -> np.ndarray:
    """The term ids of the event log's queries the run learns from (generated ones left out:
    the hybrid search fuses the lexical channel for queries with any other word)."""
    log = examples.texts if examples.generated is None else examples.texts[~examples.generated]
    return vocabulary(log)


def item_memory(config: TrainConfig) -> ItemMemory | None:
    """The cross-batch memory hard negatives are mined from (``loss.mining: memory``)."""
    lc = config.loss
    if lc.triplet_weight <= 0 or lc.mining != "memory":
        return None
    return ItemMemory(lc.memory_size, config.model.dim)


def split_data(prep: PreparedData, config: TrainConfig) -> Split:
    ex = prep.examples
    train_idx, val_idx = split_examples(ex, config.val_fraction, config.seed)
    reps, rels = validation_qrels(ex, val_idx)
    known: dict[str, set[int]] = {t: set(r) for t, r in (ex.relevant or {}).items()}
    for i in train_idx:
        if ex.texts[i]:  # a feed example (no text) is one shopper's: nothing shared by text
            known.setdefault(ex.texts[i], set()).add(int(ex.item_rows[i]))
    log_q = popularity_log_q(ex.item_rows[train_idx], len(prep.catalog))
    return Split(train_idx, val_idx, reps, rels, known, log_q)


def build_model(
    config: TrainConfig, parallel
) -> tuple[torch.nn.Module, torch.optim.Optimizer, list]:
    """The model (sharded across processes when ``parallel`` says so) and its optimizer;
    ``dense``: the parameters whose gradients are averaged by hand when sharded."""
    if parallel.sharded:
        model = shard_model(config.model, config.lr, parallel)
        dense = dense_parameters(model)
        params = dense
    else:
        model = MRSEModel(config.model)
        dense = []
        params = model.parameters()
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return model, opt, dense


def steps_per_epoch(n_train: int, config: TrainConfig, parallel) -> int:
    # Sharded: every rank must make the same collective calls, so drop the ragged last batch.
    steps = (
        n_train // config.batch_size if parallel.sharded else math.ceil(n_train / config.batch_size)
    )
    if steps == 0:
        raise ValueError(
            f"{n_train} training examples do not fill one batch of {config.batch_size}"
        )
    return steps


def run_epoch(
    model, opt, dense, criterion: HybridLoss, prep: PreparedData, split: Split,
    index: torch.Tensor, config: TrainConfig, parallel, gen: torch.Generator, steps: int,
    desc: str, memory: ItemMemory | None = None,
) -> tuple[float, int]:  # fmt: skip
    """One pass over the training examples in a fresh order (or its first ``steps`` batches);
    returns (mean loss, examples). ``index`` (N, D): item embeddings, for the users' recent
    items and, without a ``memory``, for mining (then re-encoded every ``refresh_every``
    steps)."""
    model.train()
    perm = split.train[torch.randperm(len(split.train), generator=gen).numpy()]
    losses: list[float] = []
    seen = 0
    bar = tqdm(range(steps), desc=desc, unit="step", leave=False, disable=not parallel.is_main)
    for step in bar:
        rows = perm[step * config.batch_size : (step + 1) * config.batch_size]
        rows = rows[parallel.rank :: parallel.world]
        if len(rows) < 2:
            continue
        if memory is None and step and step % config.refresh_every == 0:
            index = encode_catalog(model, prep.catalog)
        loss = criterion(loss_batch(model, prep, split, rows, index, config, gen, memory))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if parallel.sharded:
            average_dense_gradients(dense, parallel.world)
        opt.step()
        losses.append(float(loss.detach()))
        seen += len(rows) * parallel.world
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    return (float(np.mean(losses)) if losses else 0.0), seen


def _record(progress: Progress, epoch: int, loss: float, val: dict, name: str, parallel) -> None:
    progress.history.append(
        {"epoch": epoch + 1, "loss": loss, **{f"val_{k}": v for k, v in val.items()}}
    )
    if parallel.is_main:
        logger.info(
            "%s epoch %d: loss %.4f, val nDCG@10 %.4f, val recall@100 %.4f",
            name, epoch + 1, loss, val["ndcg@10"], val["recall@100"],
        )  # fmt: skip


def _save_progress(
    path: Path, model, opt, gen: torch.Generator, progress: Progress, memory: ItemMemory | None
) -> None:
    extra = {} if memory is None else {"memory": memory.state_dict()}
    torch.save(
        {
            **extra,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": progress.next_epoch - 1,
            "best": progress.best,
            "best_epoch": progress.best_epoch,
            "history": json.dumps(progress.history),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout draws from the global generator
        },
        path,
    )


def _resume(path: Path, model, opt, gen: torch.Generator, memory: ItemMemory | None) -> Progress:
    if not path.exists():
        return Progress()
    st = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(st["model"])
    if memory is not None and "memory" in st:
        memory.load_state_dict(st["memory"])
    opt.load_state_dict(st["optimizer"])
    gen.set_state(st["generator"])
    if "torch_rng" in st:
        torch.set_rng_state(st["torch_rng"])
    progress = Progress(
        int(st["epoch"]) + 1, float(st["best"]), int(st["best_epoch"]), json.loads(st["history"])
    )
    logger.info("resumed from epoch %d (best val nDCG@10 %.4f)", progress.next_epoch, progress.best)
    return progress


def _finish(out: Path, summary: dict, parallel) -> None:
    if parallel.is_main:
        info = json.loads((out / "run.json").read_text())
        info.update({"training": summary})
        (out / "run.json").write_text(json.dumps(info, indent=2, default=str))
        logger.info(
            "%s: best val nDCG@10 %.4f at epoch %d; %.0f examples/s; %.0fs",
            summary["name"], summary["best_val_ndcg@10"], summary["best_epoch"],
            summary["examples_per_s"], summary["seconds"],
        )  # fmt: skip
    if parallel.sharded:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def loss_weights(config: TrainConfig) -> dict[str, float]:
    lc = config.loss
    return {
        "softmax_weight": lc.softmax_weight,
        "temperature": lc.temperature,
        "triplet_weight": lc.triplet_weight,
        "margin": lc.margin,
        "consistency_weight": lc.consistency_weight,
        "consistency_temperature": lc.consistency_temperature,
        "distill_weight": lc.distill_weight,
        "distill_temperature": lc.distill_temperature,
        "single_modality_weight": lc.single_modality_weight,
    }


def loss_batch(
    model: MRSEModel,
    prep: PreparedData,
    split: Split,
    rows: np.ndarray,
    index: torch.Tensor,
    config: TrainConfig,
    gen: torch.Generator,
    memory: ItemMemory | None = None,
) -> LossBatch:
    """Encode a batch and its negatives (uniform, and hard ones mined from ``memory``, else
    from ``index``); the batch's item embeddings then go into ``memory``.

    Args:
        rows: (B,) example indices; index: (N, D) current (stale) item embeddings, used for
            the users' recent items and, without a memory, for mining.
    """
    lc, ex = config.loss, prep.examples
    pos = ex.item_rows[rows]
    q_out = model.encode_queries(prep.queries.inputs(rows), index)
    q = q_out.embedding  # (B, D)
    rand_rows, rand_log_q = uniform_negatives(len(prep.catalog), lc.random_negatives, gen)
    hard_rows = valid = None
    if lc.triplet_weight > 0:
        known = split.known
        exclude = [known.get(ex.texts[r], set()) | {int(p)} for r, p in zip(rows, pos, strict=True)]
        mine_q = (typed_intent(q_out) if lc.mine_with == "typed" else q).detach()
        if memory is None:
            hard_rows, valid = mine_hard_negatives(
                mine_q, index, exclude, lc.hard_negatives, lc.hard_pool
            )
        else:
            hard_rows, valid = mine_hard_negatives(
                mine_q, memory.embeddings, exclude, lc.hard_negatives, lc.hard_pool,
                memory.rows,
            )  # fmt: skip
    parts = [torch.from_numpy(pos), rand_rows]
    if hard_rows is not None:
        parts.append(hard_rows[valid])
    uniq, inverse = torch.unique(torch.cat(parts), return_inverse=True)
    item_tower_out = model.encode_items(prep.catalog.inputs(uniq.numpy()))
    item_out = item_tower_out.embedding  # (U, D)
    if memory is not None:
        memory.push(uniq, item_out)
    b, m = len(rows), len(rand_rows)
    # sliced in the order the loss uses them: it sets the autograd graph's order, and so the
    # float order of the gradient sums (bit-for-bit reproducible training)
    positive = item_out[inverse[:b]]  # (B, D)
    random = item_out[inverse[b : b + m]]  # (M, D)
    hard = None
    if hard_rows is not None:
        hard = q.new_zeros(b, lc.hard_negatives, q.shape[1])  # (B, K, D)
        hard[valid] = item_out[inverse[b + m :]]
    views = None
    if lc.consistency_weight > 0 and config.model.use_image:
        views = text_and_image_views(item_tower_out)
    distill = None
    if lc.distill_weight > 0 and config.model.use_image:
        means = None
        if lc.distill_text_to == "product":
            means = product_mean_embeddings(index, prep.products)
        distill = modality_views(model, prep.catalog, uniq.numpy()[: lc.distill_items], means)
    single = []  # the batch as a catalog of one modality: every item's photo, then text, gone
    if lc.single_modality_weight > 0 and config.model.use_image:
        inputs = prep.catalog.inputs(uniq.numpy())
        on = torch.ones(len(uniq), dtype=torch.bool)
        for hide in ((torch.zeros_like(on), on), (on, torch.zeros_like(on))):
            emb = model.encode_items(inputs, hide=hide).embedding
            single.append((emb[inverse[:b]], emb[inverse[b : b + m]]))
    return LossBatch(
        query=q,
        positive=positive,
        positive_log_q=split.log_q[pos],
        positive_ids=torch.from_numpy(pos),
        random=random,
        random_log_q=rand_log_q,
        random_ids=rand_rows,
        hard=hard,
        hard_valid=valid,
        views=views,
        distill=distill,
        single_modality=single,
    )


def modality_views(
    model: MRSEModel,
    catalog,
    rows: np.ndarray,
    product_means: torch.Tensor | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """For the items among ``rows`` that have text and a photo: (photo-only view, its
    teacher) and (text-only view, its teacher), (n, D) each, for modality distillation; the
    teacher is the item's full view, or for the text alone ``product_means`` (N, D) at its row
    when given (``product_mean_embeddings``). None for fewer than two items."""
    both = (catalog.has_text[rows] & catalog.has_image[rows]).numpy()
    rows = rows[both]
    if len(rows) < 2:
        return None
    inputs = catalog.inputs(rows)
    on = torch.ones(len(rows), dtype=torch.bool)
    off = torch.zeros_like(on)
    full = model.encode_items(inputs, hide=(off, off)).embedding
    photo_only = model.encode_items(inputs, hide=(on, off)).embedding
    text_only = model.encode_items(inputs, hide=(off, on)).embedding
    text_teacher = full if product_means is None else product_means[torch.from_numpy(rows)]
    return [(photo_only, full), (text_only, text_teacher)]


def product_mean_embeddings(index: torch.Tensor, products: np.ndarray) -> torch.Tensor:
    """(N, D) unit: each item's row replaced by the mean of its product's variants' rows of
    ``index`` (N, D); ``products`` (N,) the group of each row."""
    groups = torch.from_numpy(products)
    sums = torch.zeros(int(products.max()) + 1, index.shape[1]).index_add_(0, groups, index)
    return torch.nn.functional.normalize(sums[groups], dim=-1)
