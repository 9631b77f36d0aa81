"""The search engine behind the server: arm -> profile -> query encoding -> filtered ANN search.

Synchronous and thread-safe for reads; the gRPC layer runs it in a bounded thread pool and maps
its errors to status codes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mrse.catalog.follower import IndexFollower
from mrse.encoders.features import LazyEncoder
from mrse.experiments.assignment import Arm, Experiment, assign_arm, unit_of
from mrse.experiments.interleave import INTERLEAVED, SHARED, team_draft
from mrse.experiments.report import Exposure
from mrse.features.catalog import centre_unit
from mrse.features.lexical import lexical_query
from mrse.features.photo import (
    PHOTO_CANDIDATES,
    PHOTO_OWN_CANDIDATES,
    photo_rerank,
    photo_sketch,
)
from mrse.features.profile import ProfileState, viewed_profile
from mrse.features.queries import FEED_QUERY
from mrse.features.store import ProfileStore
from mrse.index.base import Hit, SearchFilter, VectorIndex, hit_sketches
from mrse.index.build import IndexConfig, open_index
from mrse.index.examples import (
    average_vector,
    feed_interests,
    interest_depth,
    interest_weights,
    merge_best,
)
from mrse.index.hybrid import HybridOptions, lexical_terms_for
from mrse.index.points import EXPLAIN_KEY, explain_outputs
from mrse.models.photo import photo_query_vectors
from mrse.models.towers import TowerOutput
from mrse.models.two_tower import explain, explain_items
from mrse.serving.guard import Guard
from mrse.serving.query_encoding import QueryVectors
from mrse.serving.validation import ValidRequest
from mrse.training.checkpoint import Run, load_run

logger = logging.getLogger(__name__)

FEED_EF = 4  # a feed's interest searches ask for this many HNSW candidates per result


@dataclass(frozen=True)
class Route:
    """Where a request goes: its experiment, the arms answering it (with their bundles), the
    unit id it was assigned by and, when the request lacked the unit's own id, which one was
    used instead (``mrse.experiments.assignment.unit_of``)."""

    experiment: Experiment
    arms: list[tuple[Arm, ModelBundle]]
    unit_id: str
    fallback: str = ""


class NotFound(LookupError):
    """An experiment or arm that does not exist."""


class Unavailable(RuntimeError):
    """A dependency the answer needs (model, index) is not there."""


class Unsupported(RuntimeError):
    """The arm's model cannot answer this kind of request (a photo, for a model that reads no
    photos)."""


@dataclass
class ModelBundle:
    """One servable model version: its weights and its index. Everything a request needs per
    item (vectors, payload, what explanations need) is read from the index, so a bundle holds
    no per-item state and serves what the catalog worker writes without a restart."""

    version: str
    run: Run
    index: VectorIndex


def load_bundle(
    version: str, run_dir: Path, index: IndexConfig, index_name: str | None = None
) -> ModelBundle:
    """Load a run and open its index (``index_name``, default the version) at its dimension."""
    run = load_run(run_dir)
    return ModelBundle(version, run, open_index(index, index_name or version, run.config.model.dim))


class Explanation(NamedTuple):
    """A score split by modality; the four add up to the score (``lexical``: what the lexical
    channel added, 0 for dense retrieval)."""

    text: float
    image: float
    profile: float
    lexical: float = 0.0


@dataclass
class ResultItem:
    item_id: str
    score: float
    payload: dict
    explanation: Explanation | None
    found_by: str = "dense"  # the channel that brought it (mrse.index.hybrid.FOUND_BY)
    team: str = ""  # interleaving: the arm whose ranking contributed it ("": both arms)


@dataclass
class SearchOutcome:
    results: list[ResultItem]
    request_id: str
    experiment: str
    arm: str
    model_version: str
    personalized: bool
    degraded: bool
    timings: dict[str, float] = field(default_factory=dict)


class SearchEngine:
    """Routes each request to an arm and answers it with that arm's model and index.

    ``search_many`` answers a batch: one feature-store read, one query-tower pass and one
    explanation pass per model version in the batch. The server feeds it from a queue with one
    worker thread (see :mod:`mrse.serving.batcher`): on CPython, many threads each running small
    PyTorch calls spend their time handing the GIL around; one thread with batches does not.
    """

    def __init__(
        self,
        bundles: dict[str, ModelBundle],
        experiments: dict[str, Experiment],
        default_experiment: str,
        query_vectors: QueryVectors,
        profiles: ProfileStore | None = None,
        log_exposure: Callable[[Exposure], None] | None = None,
        profile_timeout_s: float = 0.25,
        profile_retry_s: float = 1.0,
        hybrid: HybridOptions | None = None,
    ) -> None:
        """``profile_timeout_s``: the most a batch waits for the feature store; after a
        failure or a late answer the store is skipped for ``profile_retry_s`` (see
        :mod:`mrse.serving.guard`); ``hybrid``: how arms with ``retrieval: hybrid`` fuse the
        lexical channel."""
        if default_experiment not in experiments:
            raise ValueError(f"default experiment {default_experiment!r} is not defined")
        self.bundles = bundles
        self.experiments = experiments
        self.default_experiment = default_experiment
        self.query_vectors = query_vectors
        self.profiles = profiles
        self.log_exposure = log_exposure
        self.degradations = 0
        self.profile_guard = Guard("feature store", profile_timeout_s, profile_retry_s)
        self.hybrid = hybrid or HybridOptions()
        self.follower: IndexFollower | None = None  # applies the catalog worker's writes
        self.watcher = None  # loads model versions and experiment changes (serving.models)
        self._photos = LazyEncoder(_image_encoder, "encode_tensors")  # loaded on the first photo

    def _route(self, req: ValidRequest) -> Route:
        """The experiment, the unit the request is assigned by, and the arms (with their
        bundles) that answer it: one, or both of an interleaving experiment's."""
        name = req.experiment or self.default_experiment
        experiment = self.experiments.get(name)
        if experiment is None:
            raise NotFound(f"no experiment named {name!r}")
        unit_id, used = unit_of(experiment, req.user_id, req.session_id, req.request_id)
        try:
            if experiment.kind == "interleave" and req.arm_override is None:
                arms = list(experiment.arms)
            else:
                arms = [assign_arm(unit_id, experiment, req.arm_override)]
        except KeyError as exc:  # str(KeyError) is the repr of its message: quotes doubled
            raise NotFound(exc.args[0] if exc.args else "no such arm") from exc
        answered = []
        for arm in arms:
            bundle = self.bundles.get(arm.model_version)
            if bundle is None:
                raise Unavailable(f"model version {arm.model_version!r} is not loaded")
            answered.append((arm, bundle))
        fallback = "" if used == experiment.unit else used
        return Route(experiment, answered, unit_id, fallback)

    def _profiles(
        self, bundle: ModelBundle, user_ids: list[str | None]
    ) -> tuple[list[ProfileState], list[bool], bool]:
        """(states, personalized per request, degraded). One read for the batch; store down ->
        cold start for all, never an error."""
        cold = bundle.run.featurizer.cold_profile()
        known = [u for u in user_ids if u is not None]
        if not known or self.profiles is None or not bundle.run.config.model.use_profile:
            return [cold] * len(user_ids), [False] * len(user_ids), False
        store = self.profiles
        try:
            stored = self.profile_guard(
                lambda: store.read(known, with_event_ids=False), owner=store
            )
        except Exception:  # any store failure degrades to non-personalised results (the
            self.degradations += 1  # guard logged why, once per trip)
            return [cold] * len(user_ids), [False] * len(user_ids), True
        found = [stored.get(u) if u is not None else None for u in user_ids]
        return (
            [p.state if p is not None else cold for p in found],
            [p is not None for p in found],
            False,
        )

    def search(self, req: ValidRequest) -> SearchOutcome:
        """One request (raises NotFound / Unavailable)."""
        (outcome,) = self.search_many([req])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def search_many(self, reqs: list[ValidRequest]) -> list[SearchOutcome | Exception]:
        """Answer a batch; each entry is the request's outcome or its NotFound / Unavailable.

        An interleaved request is answered by both its arms (two retrievals, merged by team
        draft). Every request's ``timings`` are its batch's stage times (it waited for them)."""
        out: list[SearchOutcome | Exception | None] = [None] * len(reqs)
        routes: dict[int, Route] = {}
        jobs: list[tuple[int, Arm, ModelBundle]] = []  # (request, arm, bundle) to retrieve
        for i, req in enumerate(reqs):
            try:
                routes[i] = self._route(req)
            except (NotFound, Unavailable) as exc:
                out[i] = exc
                continue
            jobs.extend((i, arm, bundle) for arm, bundle in routes[i].arms)
        groups: dict[str, list[int]] = {}
        for j, (_, _, bundle) in enumerate(jobs):
            groups.setdefault(bundle.version, []).append(j)
        done: dict[int, tuple[list[ResultItem], bool, bool, dict] | Exception] = {}
        for js in groups.values():
            bundle = jobs[js[0]][2]  # the version routed to: it serves the request through
            batch = [reqs[jobs[j][0]] for j in js]
            t = time.perf_counter()
            # more like this is not personalised, a guest's feed reads their viewed items: no
            # profile read for them
            users = [None if r.positives or r.photo is not None or r.viewed else r.user_id
                     for r in batch]  # fmt: skip
            states, personalized, degraded = self._profiles(bundle, users)
            timings = {"features": time.perf_counter() - t}
            try:
                results = self._retrieve(
                    bundle, batch, states, timings, [jobs[j][1].retrieval for j in js],
                    personalized,
                )  # fmt: skip
            except Unavailable as exc:
                done.update({j: exc for j in js})
                continue
            for n, j in enumerate(js):
                r = results[n]
                done[j] = r if isinstance(r, Exception) else (r, personalized[n], degraded, timings)
        answered: dict[int, list[int]] = {}
        for j, (i, _, _) in enumerate(jobs):
            answered.setdefault(i, []).append(j)
        for i, js in answered.items():
            failed = [done[j] for j in js if isinstance(done[j], Exception)]
            if failed:
                out[i] = failed[0]
                continue
            out[i] = self._outcome(reqs[i], routes[i], [jobs[j][1] for j in js],
                                   [done[j] for j in js])  # type: ignore[misc]  # fmt: skip
        return out  # type: ignore[return-value]

    def _outcome(
        self, req: ValidRequest, route: Route, arms: list[Arm], answers: list
    ) -> SearchOutcome:
        """One request's outcome from its arms' answers (merged by team draft when there are
        two), logged as an exposure."""
        personalized = any(a[1] for a in answers)
        degraded = any(a[2] for a in answers)
        timings = {k: max(a[3].get(k, 0.0) for a in answers) for k in answers[0][3]}
        if len(answers) == 1:
            results, arm = answers[0][0], arms[0].name
            version, teams = arms[0].model_version, ()
        else:
            by_arm = [{r.item_id: r for r in a[0]} for a in answers]
            items, sides = team_draft([r.item_id for r in answers[0][0]],
                                      [r.item_id for r in answers[1][0]], req.k,
                                      req.request_id)  # fmt: skip
            teams = tuple("" if t == SHARED else arms[t].name for t in sides)
            results = [replace(by_arm[max(t, 0)][i], team=name)
                       for i, t, name in zip(items, sides, teams, strict=True)]  # fmt: skip
            arm, version = INTERLEAVED, "+".join(a.model_version for a in arms)
        outcome = SearchOutcome(
            results, req.request_id, route.experiment.name, arm, version, personalized,
            degraded, dict(timings),
        )  # fmt: skip
        if self.log_exposure is not None:
            self.log_exposure(
                Exposure(req.request_id, route.experiment.name, arm, req.user_id or "",
                         tuple(r.item_id for r in results), time.time(),
                         qa=req.arm_override is not None, session_id=req.session_id or "",
                         unit=route.experiment.unit, unit_id=route.unit_id,
                         unit_fallback=route.fallback, teams=teams)
            )  # fmt: skip
        return outcome

    def _retrieve(
        self,
        bundle: ModelBundle,
        reqs: list[ValidRequest],
        states: list[ProfileState],
        timings: dict[str, float],
        retrievals: list[str] | None = None,
        personalized: list[bool] | None = None,
    ) -> list[list[ResultItem] | Exception]:
        """Per request, its results (or its NotFound): typed queries through the query tower,
        more-like-this requests by their examples' vectors, feeds by the shopper's profile
        (``_retrieve_feeds`` sets their entries of ``personalized``); adds the stage timings
        (seconds) to ``timings``."""
        retrievals = retrievals or ["dense"] * len(reqs)
        personalized = personalized if personalized is not None else [False] * len(reqs)
        out: list[list[ResultItem] | Exception] = [[] for _ in reqs]
        photos = [n for n, r in enumerate(reqs) if r.photo is not None]
        made = [n for n, r in enumerate(reqs) if r.positives]
        feeds = [n for n, r in enumerate(reqs) if r.feed]
        typed = [n for n in range(len(reqs)) if n not in {*photos, *made, *feeds}]
        if feeds:
            mine = [False] * len(feeds)
            answers = self._retrieve_feeds(bundle, [reqs[n] for n in feeds],
                                           [states[n] for n in feeds], timings, mine)  # fmt: skip
            for n, res, p in zip(feeds, answers, mine, strict=True):
                out[n], personalized[n] = res, p
        for part, answer in (
            (typed, lambda ns: self._retrieve_typed(bundle, [reqs[n] for n in ns],
                                                    [states[n] for n in ns], timings,
                                                    [retrievals[n] for n in ns])),
            (made, lambda ns: self._retrieve_examples(bundle, [reqs[n] for n in ns], timings)),
            (photos, lambda ns: self._retrieve_photos(bundle, [reqs[n] for n in ns], timings)),
        ):  # fmt: skip
            if part:
                for n, res in zip(part, answer(part), strict=True):
                    out[n] = res
        return out

    def _retrieve_examples(
        self, bundle: ModelBundle, reqs: list[ValidRequest], timings: dict[str, float]
    ) -> list[list[ResultItem] | Exception]:
        """More like this (``mrse.index.examples.average_vector``): the examples' vectors read
        from the index, one search for the batch, the examples left out of the results; a
        request naming an item the index does not hold gets NotFound."""
        t = time.perf_counter()
        wanted = list(dict.fromkeys(i for r in reqs for i in (*r.positives, *r.negatives)))
        with _index_failure(bundle):
            found = bundle.index.vectors(wanted)
        out: list[list[ResultItem] | Exception] = [[] for _ in reqs]
        live, queries = [], []
        for n, r in enumerate(reqs):
            lacking = _not_in_index((*r.positives, *r.negatives), found)
            if lacking is not None:
                out[n] = lacking
                continue
            negatives = [found[i] for i in r.negatives]
            queries.append(average_vector(np.stack([found[i] for i in r.positives]),
                                          np.stack(negatives) if negatives else None))  # fmt: skip
            live.append(n)
        _add(timings, "encode", t)
        if not live:
            return out
        t = time.perf_counter()
        vectors = np.stack(queries)
        with _index_failure(bundle):
            hits = bundle.index.search_many(
                vectors,
                [reqs[n].k + len(reqs[n].positives) + len(reqs[n].negatives) for n in live],
                [reqs[n].filter for n in live],
            )
        kept = []
        for n, hs in zip(live, hits, strict=True):
            examples = {*reqs[n].positives, *reqs[n].negatives}
            kept.append([h for h in hs if h.item_id not in examples][: reqs[n].k])
        _add(timings, "search", t)
        t = time.perf_counter()
        explanations = self._explain_examples(bundle, vectors, kept)
        _add(timings, "explain", t)
        for n, hs, ex in zip(live, kept, explanations, strict=True):
            out[n] = [ResultItem(h.item_id, h.score, h.payload, ex.get(h.item_id)) for h in hs]
        return out

    def _retrieve_feeds(
        self,
        bundle: ModelBundle,
        reqs: list[ValidRequest],
        states: list[ProfileState],
        timings: dict[str, float],
        personalized: list[bool],
    ) -> list[list[ResultItem] | Exception]:
        """Home feeds: the shopper's profile (a guest's: their viewed items, which must be in
        the index) as interests (``_interest_feeds``); a shopper with no history gets the run's
        recent popularity (``_popular``). Sets ``personalized[n]`` for the feeds a history
        shaped."""
        out: list[list[ResultItem] | Exception] = [[] for _ in reqs]
        viewed = list(dict.fromkeys(i for r in reqs for i in r.viewed))
        found: dict[str, np.ndarray] = {}
        if viewed:
            with _index_failure(bundle):
                found = bundle.index.vectors(viewed)
        cold = bundle.run.featurizer.cold_profile()
        now = time.time()
        live, cold_ones, live_states = [], [], []
        for n, (r, state) in enumerate(zip(reqs, states, strict=True)):
            lacking = _not_in_index(r.viewed, found)
            if lacking is not None:
                out[n] = lacking
                continue
            if r.viewed:
                state = viewed_profile(cold, r.viewed, now)
            if state.recent_items and bundle.run.config.model.use_profile:
                live.append(n)
                live_states.append(state)
            else:
                cold_ones.append(n)
        if live:
            feeds = self._interest_feeds(bundle, [reqs[n] for n in live], live_states, timings)
            for n, items in zip(live, feeds, strict=True):
                out[n] = items
                personalized[n] = True
        if cold_ones:
            popular = self._popular(bundle, [reqs[n] for n in cold_ones], timings)
            for n, items in zip(cold_ones, popular, strict=True):
                out[n] = items
        return out

    def _interest_feeds(
        self,
        bundle: ModelBundle,
        reqs: list[ValidRequest],
        states: list[ProfileState],
        timings: dict[str, float],
    ) -> list[list[ResultItem]]:
        """Personal feeds (``mrse.index.examples``): each of the shopper's newest
        ``FEED_INTERESTS`` distinct items is an interest, weighted by its age (the profile's
        half-life); one search per interest, in one batch, merged by best weighted score.
        Explanations: the item's own experts' split of its similarity to the interest that gave
        its score (``text``, ``image``), times that interest's weight."""
        t = time.perf_counter()
        now = time.time()
        half_life = bundle.run.config.profile.half_life_days
        picked = [feed_interests(s.recent_items, s.recent_ts) for s in states]
        wanted = list(dict.fromkeys(i for p in picked for i, _ in p))
        with _index_failure(bundle):
            found = bundle.index.vectors(wanted) if wanted else {}
        live = [(n, item, ts) for n, p in enumerate(picked) for item, ts in p if item in found]
        seen = [set(s.recent_items) if r.exclude_seen else set()
                for r, s in zip(reqs, states, strict=True)]  # fmt: skip
        _add(timings, "encode", t)
        if not live:  # none of the recent items is in the index any more
            return self._popular(bundle, reqs, timings)
        t = time.perf_counter()
        owners = [n for n, _, _ in live]  # row -> its request
        vectors = np.stack([found[item] for _, item, _ in live])  # (rows, D)
        weights = interest_weights([ts for _, _, ts in live], now, half_life)  # (rows,)
        per = Counter(owners)
        depth = [interest_depth(reqs[o].k, per[o]) + len(seen[o]) for o in owners]
        with _index_failure(bundle):  # ids and scores only: payloads are read for the chosen
            # shallow searches need fewer HNSW candidates: 4x the depth kept recall@25 at 0.99
            # on hm, as the default 200 does (docs/benchmarks.md, "Recommendations")
            hits = bundle.index.search_many(vectors, depth, [reqs[o].filter for o in owners],
                                            payload=False, ef=FEED_EF * max(depth))  # fmt: skip
        rows: list[list[int]] = [[] for _ in reqs]  # each request's rows in ``hits``
        for row, o in enumerate(owners):
            rows[o].append(row)
        chosen = []  # per request: (hit, score, row of its interest), best first, k at most
        for r, rs, x in zip(reqs, rows, seen, strict=True):
            merged = merge_best([hits[row] for row in rs], [float(weights[row]) for row in rs])
            best = [(h, sc, rs[n]) for h, sc, n in merged if h.item_id not in x]
            chosen.append(best[: r.k])
        with _index_failure(bundle):  # read by id: the searches applied the filters
            payloads = bundle.index.payloads(
                list(dict.fromkeys(c[0].item_id for cs in chosen for c in cs))
            )
        stored = [{c[0].item_id: Hit(c[0].item_id, c[1], payloads[c[0].item_id])
                   for c in cs if c[0].item_id in payloads} for cs in chosen]  # fmt: skip
        _add(timings, "search", t)
        t = time.perf_counter()
        # one explanation pass: each chosen item against the interest that gave its score
        flat = [(n, c) for n, cs in enumerate(chosen) for c in cs if c[0].item_id in stored[n]]
        parts = self._explain_examples(
            bundle,
            vectors[[c[2] for _, c in flat]] if flat else vectors[:0],
            [[stored[n][c[0].item_id]] for n, c in flat],
        )
        _add(timings, "explain", t)
        out: list[list[ResultItem]] = [[] for _ in reqs]
        for (n, (h, score, row)), part in zip(flat, parts, strict=True):
            e = part.get(h.item_id)
            w = float(weights[row])
            e = None if e is None else Explanation(w * e.text, w * e.image, 0.0)
            out[n].append(ResultItem(h.item_id, score, stored[n][h.item_id].payload, e))
        return out

    def _popular(
        self, bundle: ModelBundle, reqs: list[ValidRequest], timings: dict[str, float]
    ) -> list[list[ResultItem]]:
        """The feed of a shopper with no history: the run's most popular items that the
        request's filter keeps, most popular first, scored 1 / rank. A run that kept no
        popularity answers with its query tower's vector for nothing typed and no profile."""
        popular = bundle.run.popular
        if not popular:
            cold = bundle.run.featurizer.cold_profile()
            asked = [replace(r, query=FEED_QUERY) for r in reqs]
            return self._retrieve_typed(bundle, asked, [cold] * len(reqs), timings,
                                        ["dense"] * len(reqs))  # fmt: skip
        t = time.perf_counter()
        out = []
        for r in reqs:
            with _index_failure(bundle):
                hits = bundle.index.among(popular, r.filter)[: r.k]
            out.append([ResultItem(h.item_id, 1.0 / (rank + 1), h.payload, None)
                        for rank, h in enumerate(hits)])  # fmt: skip
        _add(timings, "search", t)
        return out

    def _retrieve_photos(
        self, bundle: ModelBundle, reqs: list[ValidRequest], timings: dict[str, float]
    ) -> list[list[ResultItem] | Exception]:
        """Shop by photo: each photo through the frozen photo encoder and the item tower (a
        photo-only item, ``mrse.models.photo``); the towers' best ``PHOTO_CANDIDATES`` and the
        photo channel's own nearest ``PHOTO_OWN_CANDIDATES`` re-ranked together with the photo
        channel (``mrse.features.photo``)."""
        run = bundle.run
        if not run.config.model.use_image:
            return [Unsupported(f"model version {bundle.version!r} reads no photos")] * len(reqs)
        t = time.perf_counter()
        # each photo's QUERY_FRAME, decoded by the server
        features = self._photos(torch.stack([r.photo for r in reqs]))  # type: ignore[misc]
        stats = run.featurizer.stats
        queries = photo_query_vectors(run.model, stats, run.featurizer.shape, features)
        sketches = photo_sketch(centre_unit(features, stats.image_mean))
        _add(timings, "encode", t)
        t = time.perf_counter()
        with _index_failure(bundle):  # ids and sketches; full payloads for the k chosen
            candidates = bundle.index.photo_candidates(
                queries, sketches, [max(r.k, PHOTO_CANDIDATES) for r in reqs],
                PHOTO_OWN_CANDIDATES, [r.filter for r in reqs],
            )  # fmt: skip
        kept: list[list[tuple[Hit, float, float]]] = []  # (hit, fused score, photo's gain)
        for r, hs, sketch in zip(reqs, candidates, sketches, strict=True):
            dense = np.array([h.score for h in hs], np.float32)
            fused = photo_rerank(dense, sketch, hit_sketches(hs))
            order = np.argsort(-fused, kind="stable")[: r.k]
            with _index_failure(bundle):  # read by id: the search applied the filter
                stored = bundle.index.payloads([hs[i].item_id for i in order])
            kept.append([(replace(hs[i], payload=stored[hs[i].item_id]),
                          float(fused[i]), float(fused[i] - dense[i]))
                         for i in order if hs[i].item_id in stored])  # fmt: skip
        _add(timings, "search", t)
        t = time.perf_counter()
        explanations = self._explain_examples(bundle, queries, [[h for h, _, _ in k] for k in kept])
        _add(timings, "explain", t)
        out: list[list[ResultItem] | Exception] = []
        for ks, ex in zip(kept, explanations, strict=True):
            items = []
            for h, score, gain in ks:
                e = ex.get(h.item_id)
                if e is not None:  # what the photo channel added is the photo's share
                    e = Explanation(e.text, e.image + gain, 0.0)
                items.append(ResultItem(h.item_id, score, h.payload, e, h.found_by))
            out.append(items)
        return out

    @staticmethod
    def _explain_examples(
        bundle: ModelBundle, queries: np.ndarray, hits: list[list[Hit]]
    ) -> list[dict[str, Explanation]]:
        """Per request: item id -> its score split by the item's own experts (text, image),
        for example-made ``queries`` (B, D)."""
        flat = [(o, h) for o, hs in enumerate(hits) for h in hs if EXPLAIN_KEY in h.payload]
        out: list[dict[str, Explanation]] = [{} for _ in hits]
        if not flat:
            return out
        owner = np.fromiter((o for o, _ in flat), dtype=np.int64, count=len(flat))
        items = explain_outputs([h.payload[EXPLAIN_KEY] for _, h in flat], queries.shape[1])
        parts = explain_items(torch.from_numpy(queries[owner]), items)
        for (o, h), text, image in zip(
            flat, parts["text"].tolist(), parts["image"].tolist(), strict=True
        ):
            out[o][h.item_id] = Explanation(text, image, 0.0)
        return out

    def _retrieve_typed(
        self,
        bundle: ModelBundle,
        reqs: list[ValidRequest],
        states: list[ProfileState],
        timings: dict[str, float],
        retrievals: list[str],
    ) -> list[list[ResultItem]]:
        """Encode the batch's queries with the bundle's query tower, search its index (fused
        with the lexical channel for the requests whose arm's ``retrievals`` entry is
        ``hybrid``), explain the hits; adds the stage timings (seconds) to ``timings``."""
        t = time.perf_counter()
        cfg = bundle.run.config.model
        texts = [r.query for r in reqs]
        if cfg.use_query_text:
            raw = self.query_vectors.many(texts)
        else:  # the n-gram path: the model never reads a text vector, so none is computed
            raw = np.zeros((len(reqs), cfg.text_dim), dtype=np.float32)
        rows, recent = self._recent_items(bundle, states)
        qf = bundle.run.featurizer.queries(texts, raw, states, rows)
        with torch.no_grad():
            q_out = bundle.run.model.encode_queries(qf.inputs(np.arange(len(reqs))), recent)
        vectors = q_out.embedding.numpy()
        _add(timings, "encode", t)
        t = time.perf_counter()
        hybrid = [r == "hybrid" for r in retrievals]
        taught = bundle.run.taught
        lexical = [
            lexical_terms_for(lexical_query(r.query), taught, self.hybrid) if h else ()
            for r, h in zip(reqs, hybrid, strict=True)
        ]
        with _index_failure(bundle):
            hits = bundle.index.search_many(
                vectors, [r.k for r in reqs], [r.filter for r in reqs],
                lexical=lexical if any(hybrid) else None,
                hybrid=self.hybrid if any(hybrid) else None,
            )  # fmt: skip
        _add(timings, "search", t)
        t = time.perf_counter()
        explanations = self._explain(bundle, q_out, hits)
        _add(timings, "explain", t)
        return [
            [ResultItem(h.item_id, h.score, h.payload, ex.get(h.item_id), h.found_by) for h in hs]
            for hs, ex in zip(hits, explanations, strict=True)
        ]

    @staticmethod
    def _recent_items(
        bundle: ModelBundle, states: list[ProfileState]
    ) -> tuple[dict[str, int], torch.Tensor]:
        """The vectors of the batch's recent history items, read from the index: (item id ->
        row, (M, D)). Items no longer in the index are left out of the profile."""
        k = bundle.run.config.model.recent_items
        wanted = list(dict.fromkeys(i for s in states for i in s.recent_items[-k:]))
        if not wanted or not bundle.run.config.model.use_profile:
            return {}, torch.zeros(0, bundle.run.config.model.dim)
        with _index_failure(bundle):
            found = bundle.index.vectors(wanted)
        if not found:
            return {}, torch.zeros(0, bundle.run.config.model.dim)
        return {i: r for r, i in enumerate(found)}, torch.from_numpy(np.stack(list(found.values())))

    def warm(self, bundle: ModelBundle) -> None:
        """One anonymous query through ``bundle``'s model and index (its first calls load lazy
        kernels), at start or before a version loaded while serving gets traffic."""
        bundle.index.warm()
        req = ValidRequest("warm up", None, 10, SearchFilter(), None, "warm-up", None)
        self._retrieve(bundle, [req], [bundle.run.featurizer.cold_profile()], {})
        if bundle.run.config.model.use_image:  # the photo encoder, before the first photo
            photo = replace(req, query="", photo=torch.zeros(3, 224, 224))
            self._retrieve(bundle, [photo], [bundle.run.featurizer.cold_profile()], {})

    def warm_up(self) -> None:
        """An anonymous query through every loaded model and index (first calls load lazy
        kernels and encoders); the server reports SERVING only after this. Not logged as an
        exposure."""
        for bundle in self.bundles.values():
            self.warm(bundle)
        if self.profiles is not None:  # the first read loads Feast's registry: not in a request
            try:
                self.profiles.read(["warm-up"], with_event_ids=False)
            except Exception as exc:
                logger.warning("feature store not readable at start (%s); serving degraded", exc)

    def close(self) -> None:
        """Flush the exposure log and close the indexes (after the server has drained)."""
        if self.watcher is not None:
            self.watcher.close()
        if self.follower is not None:
            self.follower.close()
        self.profile_guard.close()
        close = getattr(self.log_exposure, "close", None)
        if close is not None:
            close()
        for bundle in self.bundles.values():
            bundle.index.close()

    @staticmethod
    def _explain(
        bundle: ModelBundle, q_out: TowerOutput, hits: list[list[Hit]]
    ) -> list[dict[str, Explanation]]:
        """Per request: item id -> its score's (text, image, profile, lexical) shares, one pass
        for the whole batch, from the expert outputs each hit carries in its payload and what
        the lexical channel added."""
        flat = [(o, h) for o, hs in enumerate(hits) for h in hs if EXPLAIN_KEY in h.payload]
        if q_out.gates is None or not flat:
            return [{} for _ in hits]
        owner = np.fromiter((o for o, _ in flat), dtype=np.int64, count=len(flat))
        items = explain_outputs([h.payload[EXPLAIN_KEY] for _, h in flat], q_out.embedding.shape[1])
        parts = explain(q_out.rows(owner), items)
        assert parts is not None  # both towers are gated
        shares = zip(
            parts["text"].tolist(), parts["image"].tolist(), parts["profile"].tolist(), strict=True
        )
        out: list[dict[str, Explanation]] = [{} for _ in hits]
        for (o, h), share in zip(flat, shares, strict=True):
            out[o][h.item_id] = Explanation(*share, lexical=h.lexical)
        return out


def _not_in_index(item_ids: tuple[str, ...], found: dict) -> NotFound | None:
    """NotFound naming the first of ``item_ids`` that ``found`` (the index's answer) lacks."""
    missing = [i for i in item_ids if i not in found]
    if not missing:
        return None
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return NotFound(f"no item {missing[0]!r} in the catalog{more}")


@contextmanager
def _index_failure(bundle: ModelBundle) -> Iterator[None]:
    """A failing call to ``bundle``'s index raises Unavailable (answered UNAVAILABLE)."""
    try:
        yield
    except Exception as exc:
        raise Unavailable(f"index for {bundle.version!r} failed: {exc}") from exc


def _add(timings: dict[str, float], stage: str, since: float) -> None:
    """Add the seconds since ``since`` to ``stage``'s time (a batch may run a stage twice: its
    typed queries and its more-like-this requests)."""
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - since


def _image_encoder():
    from mrse.encoders.image import ImageEncoder

    return ImageEncoder()
