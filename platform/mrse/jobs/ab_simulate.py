"""`mrse ab simulate`: what an experiment's statistics are worth, measured on real shoppers.

Real shoppers and queries from a dataset (its judged test queries, each with the shopper who
asked it), real arms served by the real gRPC server (each arm's top ``k`` for every query, and
the interleaved list for several request ids each), and clicks drawn from a position-biased
click model on the dataset's relevance judgements (seeded):

    P(click at rank r) = min(1, m_u * examine(r) * attract(grade)),
    examine(r) = 1 / r^0.7, attract = 0.03 (not judged), 0.25 (relevant), 0.7 (the bought item),

where ``m_u`` is the unit's own click propensity (Gamma, mean 1: shoppers differ, and a
shopper's habits before the experiment predict their clicks in it, which is what CUPED uses).
A simulated unit is a shopper who searches 1 + Poisson(1) times; its pre-experiment clicks are
Poisson(3 m_u ctr_u). Many repetitions then measure the false-positive rate of A/A experiments
read after every ``peek_every`` units (always-valid intervals per unit against today's
per-exposure Wilson intervals), the SRM check on a broken 45/55 split, CUPED's variance
reduction, and the units an A/B test and an interleaved one need to detect the treatment; the
interleaving test's own false-positive rate under the same daily reading; and each design's
standardised effect per unit, which bounds how many fewer units interleaving can need.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import grpc
import numpy as np

from mrse.data import load_dataset
from mrse.experiments.analysis import experiment_report
from mrse.experiments.assignment import Arm, Experiment, assign_arm
from mrse.experiments.interleave import INTERLEAVED, SHARED
from mrse.experiments.report import Exposure, wilson_interval
from mrse.experiments.stats import always_valid, cuped, preference, srm_p_value
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.build import IndexConfig, build_index
from mrse.serving.app import ServeConfig, build_engine
from mrse.serving.background import BackgroundServer
from mrse.streaming.producer import dataset_events
from mrse.streaming.service import catalog_for_profiles
from mrse.streaming.updater import ProfileUpdater
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)

ATTRACT = np.array([0.03, 0.25, 0.7])  # click probability when examined, by grade 0 / 1 / 2+
TEAM_CODES = {"control": 0, "treatment": 1, "": SHARED}  # a served result's team -> Served.teams
EXAMINE_POWER = 0.7


@dataclass(frozen=True)
class SimulateConfig:
    data: Path
    control: Path
    treatment: Path
    out: Path
    k: int = 10
    interleavings: int = 4  # interleaved lists served per query (request ids)
    repetitions: int = 200
    aa_units: int = 5_000
    peek_every: int = 100
    max_units: int = 50_000  # an A/B test that has not decided by then counts as this many
    detect_every: int = 10  # units between looks when counting units until detection (both)
    srm_units: int = 10_000
    seed: int = 0
    work_dir: Path | None = None
    cache_dir: Path | None = None


@dataclass
class Served:
    """What the server answered, as grades: per query, each arm's top k (Q, 2, k), and the
    interleaved lists (Q, L, k) with their teams (0 control, 1 treatment, ``SHARED`` both)."""

    grades: np.ndarray
    mixed: np.ndarray
    teams: np.ndarray
    plain_ms: list[float]
    interleaved_ms: list[float]
    # per query: (qid, the control's item ids, the treatment's), best first; for analyses that
    # re-merge the arms offline (docs/bench/scripts/interleaving_credit.py)
    rankings: list[tuple[str, list[str], list[str]]] = field(default_factory=list)


def _serve(cfg: SimulateConfig, work: Path) -> tuple[Served, list[tuple[str, str]]]:
    """Both arms' answers through a real gRPC server (indexes built, the shoppers' profiles in
    the online store)."""
    dataset = load_dataset(cfg.data)
    index = IndexConfig(root=work / "index")
    for name, run in (("control", cfg.control), ("treatment", cfg.treatment)):
        build_index(cfg.data, run, index, name, cfg.cache_dir)
    store = ProfileStore(FeatureStoreConfig(data_dir=work / "feast"))
    store.apply()
    catalog, profile = catalog_for_profiles(cfg.data, cfg.treatment, cfg.cache_dir)
    ProfileUpdater(store, catalog, profile).apply(dataset_events(dataset))
    arms = (Arm("control", 1, "control", "mrse_v1", "control"),
            Arm("treatment", 1, "treatment", "mrse_v1", "treatment", "hybrid"))  # fmt: skip
    engine = build_engine(ServeConfig(
        models={"control": cfg.control, "treatment": cfg.treatment},
        experiments=(Experiment("sim-ab", arms), Experiment("sim-il", arms, kind="interleave")),
        default_experiment="sim-ab", index=index, data=cfg.data,
        feature_store=FeatureStoreConfig(data_dir=work / "feast"), feature_cache=cfg.cache_dir,
    ))  # fmt: skip
    judged = dataset.qrels_by_query
    queries = [(q, u if isinstance(u, str) else "", qid) for qid, q, u in
               dataset.queries[["qid", "query", "user_id"]].itertuples(index=False)
               if qid in judged]  # fmt: skip
    n, k, lists = len(queries), cfg.k, cfg.interleavings
    grades = np.zeros((n, 2, k), np.int64)
    mixed = np.zeros((n, lists, k), np.int64)
    teams = np.full((n, lists, k), -2, np.int64)  # -2: no item there (a short list)
    plain_ms, mixed_ms = [], []
    rankings: list[tuple[str, list[str], list[str]]] = []
    try:
        with BackgroundServer(engine) as server, grpc.insecure_channel(server.target) as ch:
            stub = search_pb2_grpc.SearchServiceStub(ch)
            for qi, (query, user, qid) in enumerate(queries):
                rel = judged[qid]
                ranked: list[list[str]] = [[], []]
                for a, arm in enumerate(("control", "treatment")):
                    req = search_pb2.SearchRequest(query=query, user_id=user, k=k,
                                                   experiment="sim-ab", arm_override=arm,
                                                   request_id=f"{qid}:{arm}")  # fmt: skip
                    t = time.perf_counter()
                    resp = stub.Search(req, timeout=30)
                    plain_ms.append((time.perf_counter() - t) * 1e3)
                    grades[qi, a, : len(resp.results)] = [rel.get(r.item_id, 0)
                                                          for r in resp.results]  # fmt: skip
                    ranked[a] = [r.item_id for r in resp.results]
                rankings.append((qid, ranked[0], ranked[1]))
                for li in range(lists):
                    req = search_pb2.SearchRequest(query=query, user_id=user, k=k,
                                                   experiment="sim-il",
                                                   request_id=f"{qid}:il:{li}")  # fmt: skip
                    t = time.perf_counter()
                    resp = stub.Search(req, timeout=30)
                    mixed_ms.append((time.perf_counter() - t) * 1e3)
                    assert resp.arm == INTERLEAVED
                    for r, res in enumerate(resp.results):
                        mixed[qi, li, r] = rel.get(res.item_id, 0)
                        teams[qi, li, r] = TEAM_CODES[res.team]
    finally:
        engine.close()
    served = Served(grades, mixed, teams, plain_ms, mixed_ms, rankings)
    return served, [(q, u) for q, u, _ in queries]


def click_probabilities(grades: np.ndarray) -> np.ndarray:
    """(..., k) grades -> (..., k) click probabilities for a unit of propensity 1."""
    ranks = np.arange(1, grades.shape[-1] + 1)
    return ATTRACT[np.minimum(grades, 2)] / ranks**EXAMINE_POWER


class Population:
    """Simulated units: each a real query (and its shopper), a propensity, a number of
    searches and pre-experiment clicks."""

    def __init__(self, served: Served, rng: np.random.Generator, n: int) -> None:
        q = served.grades.shape[0]
        self.query = rng.integers(0, q, n)
        self.propensity = rng.gamma(2.0, 0.5, n)
        self.searches = 1 + rng.poisson(1.0, n)
        p_control = click_probabilities(served.grades[:, 0])  # (Q, k)
        base = 1 - np.prod(1 - np.minimum(1, p_control[self.query] * self.propensity[:, None]), 1)
        self.pre_clicks = rng.poisson(3 * base)


def _searches(p: np.ndarray, searches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Units' clicked searches: p (n, k) click probabilities, ``searches`` (n,) -> (n,)."""
    p_any = 1 - np.prod(1 - np.minimum(1, p), axis=1)  # a search with a click
    return rng.binomial(searches, p_any)


def ab_units(pop, served, arms, rng) -> np.ndarray:
    """Each unit's clicked searches under its ``arms`` (n,) (0 control, 1 treatment)."""
    p = click_probabilities(served.grades[pop.query, arms]) * pop.propensity[:, None]
    return _searches(p, pop.searches, rng)


def _ctr_per_unit_test(clicked, searches, pre, arms, tau2):
    y = clicked / searches
    adjusted, _ = cuped(y, pre)
    a, b = adjusted[arms == 0], adjusted[arms == 1]
    if len(a) < 2 or len(b) < 2:
        return None
    var = np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)
    return always_valid(float(b.mean() - a.mean()), float(var), tau2)


def _wilson_differs(clicked, searches, arms) -> bool:
    """Today's report at one look: per-exposure Wilson intervals of the two arms do not
    overlap."""
    a = wilson_interval(int(clicked[arms == 0].sum()), int(searches[arms == 0].sum()))
    b = wilson_interval(int(clicked[arms == 1].sum()), int(searches[arms == 1].sum()))
    return a[1] < b[0] or b[1] < a[0]


def _assign(n: int, seed: int, weights=(1.0, 1.0)) -> np.ndarray:
    arms = (Arm("control", weights[0], "c", "s", "c"), Arm("treatment", weights[1], "t", "s", "t"))
    experiment = Experiment(f"sim-{seed}", arms)
    return np.array([assign_arm(f"unit-{i}", experiment).name == "treatment" for i in range(n)],
                    dtype=np.int64)  # fmt: skip


def simulate(served: Served, cfg: SimulateConfig) -> dict:
    """Every measurement of the module docstring, from the served answers."""
    rng = np.random.default_rng(cfg.seed)
    peeks = range(cfg.peek_every, cfg.aa_units + 1, cfg.peek_every)
    base_ctr = float(np.mean(1 - np.prod(1 - click_probabilities(served.grades[:, 0]), 1)))
    tau2 = (0.1 * base_ctr) ** 2
    fp_ours = fp_wilson = 0
    for rep in range(cfg.repetitions):  # A/A: both arms are the control
        pop = Population(served, rng, cfg.aa_units)
        arms = _assign(cfg.aa_units, rep)
        clicked = ab_units(pop, served, np.zeros_like(arms), rng)
        ours = wilson = False
        for n in peeks:
            t = _ctr_per_unit_test(clicked[:n], pop.searches[:n], pop.pre_clicks[:n],
                                   arms[:n], tau2)  # fmt: skip
            ours |= t is not None and t.p_value < 0.05
            wilson |= _wilson_differs(clicked[:n], pop.searches[:n], arms[:n])
        fp_ours += ours
        fp_wilson += wilson
    # a broken split: 45 / 55 where the configuration says 50 / 50
    broken = _assign(cfg.srm_units, 10_001, weights=(45.0, 55.0))
    srm = srm_p_value([int((broken == 0).sum()), int((broken == 1).sum())], [1.0, 1.0])
    # CUPED on click-through per unit (a large A/A sample)
    pop = Population(served, rng, 20_000)
    y = ab_units(pop, served, np.zeros(20_000, np.int64), rng) / pop.searches
    _, reduction = cuped(y, pop.pre_clicks)
    ab_needed, il_needed = [], []
    reps = max(20, cfg.repetitions // 5)
    for rep in range(reps):  # units until the treatment is detected (always-valid, 95%)
        pop = Population(served, rng, cfg.max_units)
        arms = _assign(cfg.max_units, 50_000 + rep)
        clicked = ab_units(pop, served, arms, rng)
        found = cfg.max_units
        for n in range(cfg.detect_every, cfg.max_units + 1, cfg.detect_every):
            t = _ctr_per_unit_test(clicked[:n], pop.searches[:n], pop.pre_clicks[:n],
                                   arms[:n], tau2)  # fmt: skip
            if t is not None and t.low > 0:
                found = n
                break
        ab_needed.append(found)
        il_needed.append(_interleaving_units(served, rng, cfg))
    return {
        "aa_false_positive_rate_interleaving": _interleaving_aa(served, rng, cfg),
        "effect_size_per_unit": effect_sizes(served, rng),
        "aa_false_positive_rate": fp_ours / cfg.repetitions,
        "aa_false_positive_rate_exposure_wilson": fp_wilson / cfg.repetitions,
        "srm_p_value_45_55": srm,
        "cuped_variance_reduction": reduction,
        "units_to_detect_ab": float(np.median(ab_needed)),
        "units_to_detect_interleaving": float(np.median(il_needed)),
        "units_to_detect_ab_runs": ab_needed,
        "units_to_detect_interleaving_runs": il_needed,
        "control_ctr": base_ctr,
        # the interleaved lists' positions both arms agreed on (credited to neither)
        "interleaved_shared_share": float((served.teams == SHARED).mean()),
    }


def interleaved_credit(
    served: Served,
    rng: np.random.Generator,
    n: int,
    probabilities: Callable[[np.ndarray], np.ndarray] = click_probabilities,
) -> np.ndarray:
    """(n,) simulated units' interleaving credit: clicks on the treatment's items minus clicks
    on the control's, over each unit's searches (each search one of the served interleaved
    lists of its query, drawn at random; clicks on shared items credit neither).
    ``probabilities``: the click model, (n, k) grades -> click probabilities at propensity 1."""
    pop = Population(served, rng, n)
    lists = rng.integers(0, served.mixed.shape[1], (n, int(pop.searches.max())))
    credit = np.zeros(n)
    for s in range(int(pop.searches.max())):
        active = pop.searches > s
        grades = served.mixed[pop.query, lists[:, s]]  # (n, k)
        teams = served.teams[pop.query, lists[:, s]]
        p = np.minimum(1, probabilities(grades) * pop.propensity[:, None])
        clicks = rng.random(p.shape) < p
        credit += active * ((clicks & (teams == 1)).sum(1) - (clicks & (teams == 0)).sum(1))
    return credit


def _interleaving_units(served: Served, rng: np.random.Generator, cfg: SimulateConfig) -> int:
    """Units until an interleaved experiment prefers the treatment (always valid, 95%),
    looking after every ``detect_every`` units (as the A/B count does)."""
    credit = interleaved_credit(served, rng, cfg.max_units)
    for n in range(cfg.detect_every, cfg.max_units + 1, cfg.detect_every):
        if preference(credit[:n], tau2=0.01).delta.low > 0:
            return n
    return cfg.max_units


def _interleaving_aa(served: Served, rng: np.random.Generator, cfg: SimulateConfig) -> float:
    """The interleaving test's false-positive rate when a team reads it after every
    ``detect_every`` units: two arms as different as the served ones but equally good, made
    by giving each unit's credit a fair random sign (under no preference a unit's credit is as
    likely negative as positive); an experiment counts once, at its first look whose
    always-valid interval excludes zero either way."""
    false = 0
    for _ in range(cfg.repetitions):
        credit = interleaved_credit(served, rng, cfg.aa_units)
        credit *= rng.choice([-1.0, 1.0], cfg.aa_units)
        for n in range(cfg.detect_every, cfg.aa_units + 1, cfg.detect_every):
            d = preference(credit[:n], tau2=0.01).delta
            if d.low > 0 or d.high < 0:
                false += 1
                break
    return false / cfg.repetitions


def effect_sizes(served: Served, rng: np.random.Generator, n: int = 20_000) -> dict[str, float]:
    """Each design's standardised effect per unit on ``n`` simulated units (how far the
    treatment moves one unit's statistic, in that statistic's standard deviations): the A/B
    test's click-through per unit (CUPED-adjusted; treatment minus control over the control's
    sd), and interleaving's preference sign (mean over sd). An A/B test splits its units
    between two arms, so for the same precision it needs about ``4 (il / ab)^2`` times as
    many units as interleaving with these effect sizes (``implied_ratio``)."""
    pop = Population(served, rng, n)
    ctr = []
    for arm in (0, 1):
        ctr.append(ab_units(pop, served, np.full(n, arm, np.int64), rng) / pop.searches)
    adjusted, _ = cuped(np.concatenate(ctr), np.concatenate([pop.pre_clicks, pop.pre_clicks]))
    control, treatment = adjusted[:n], adjusted[n:]
    ab = float((treatment.mean() - control.mean()) / control.std())
    sign = np.sign(interleaved_credit(served, rng, n))
    il = float(sign.mean() / sign.std()) if sign.std() > 0 else 0.0
    ratio = 4 * il * il / (ab * ab) if ab else math.inf
    return {"ab": ab, "interleaving": il, "implied_ratio": ratio}


def _report_once(served: Served, queries, cfg: SimulateConfig) -> dict:
    """One simulated A/B experiment (2,000 units) as exposure and click records through the
    report itself: the decision line a team would read."""
    rng = np.random.default_rng(cfg.seed + 7)
    pop = Population(served, rng, 2_000)
    arms = _assign(2_000, 777)
    exposures, clicks = [], []
    t0 = 1.8e9
    for u in range(2_000):
        user = f"sim-user-{u}"
        for _ in range(int(pop.pre_clicks[u])):
            clicks.append((user, f"pre-{u}", t0 - 86_400))
        grades = served.grades[pop.query[u], arms[u]]
        p = np.minimum(1, click_probabilities(grades) * pop.propensity[u])
        for s in range(int(pop.searches[u])):
            ts = t0 + 60 * (u * 10 + s)
            items = tuple(f"q{pop.query[u]}-a{arms[u]}-r{r}" for r in range(len(grades)))
            exposures.append(Exposure(f"r{u}-{s}", "sim", ("control", "treatment")[arms[u]],
                                      user, items, ts, unit_id=user))  # fmt: skip
            for r in np.flatnonzero(rng.random(len(p)) < p):
                clicks.append((user, items[r], ts + 5))
    return experiment_report(exposures, clicks, "sim", control="control")


def run_simulation(cfg: SimulateConfig) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = cfg.work_dir or Path(tmp)
        served, queries = _serve(cfg, work)
    result = simulate(served, cfg)
    report = _report_once(served, queries, cfg)
    timed = (("plain", served.plain_ms), ("interleaved", served.interleaved_ms))
    ms = {name: (float(np.percentile(v, 50)), float(np.percentile(v, 99))) for name, v in timed}
    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "data": str(cfg.data),
        "control": str(cfg.control),
        "treatment": str(cfg.treatment),
        "queries": len(queries),
        "repetitions": cfg.repetitions,
        "peek_every": cfg.peek_every,
        **result,
        "units_ratio_ab_over_interleaving": (
            result["units_to_detect_ab"] / max(result["units_to_detect_interleaving"], 1)
        ),
        "serving_ms": {
            "plain_p50": ms["plain"][0],
            "plain_p99": ms["plain"][1],
            "interleaved_p50": ms["interleaved"][0],
            "interleaved_p99": ms["interleaved"][1],
            "p99_ratio": ms["interleaved"][1] / ms["plain"][1],
        },
        "example_report_decision": report["decision"],
        "example_report": report,
        "mean_grade_top3": {
            "control": float(served.grades[:, 0, :3].mean()),
            "treatment": float(served.grades[:, 1, :3].mean()),
        },
    }
