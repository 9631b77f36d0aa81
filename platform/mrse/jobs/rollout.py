"""`mrse rollout`: ship a model version with no restart.

1. register the version and its run in the experiments database's model table;
2. wait while the catalog worker writes its whole index (the catalog as the events describe
   it) and marks it ready; the old versions serve meanwhile;
3. point an experiment's arm at it (or change arm weights, or drop an arm) in one write: every
   server's watcher loads the version, then routes to it; a version no arm names any more is
   unloaded once the requests routed to it have finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from mrse.experiments.assignment import Arm
from mrse.experiments.store import ExperimentStore

logger = logging.getLogger(__name__)


def register_version(store: ExperimentStore, version: str, run: Path, timeout_s: float) -> float:
    """Register ``version`` and wait until its index is ready; returns the seconds waited."""
    from mrse.index.build import version_name
    from mrse.training.checkpoint import load_run

    version_name(version)
    load_run(run)  # fail here, not in the worker, on a run that does not load
    store.put_model(version, str(Path(run).resolve()))
    start = time.monotonic()
    while store.models()[version].ready_at is None:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(
                f"the catalog worker did not write {version}'s index in {timeout_s:.0f}s: is it "
                "running with experiments_url set to this database?"
            )
        time.sleep(0.5)
    return time.monotonic() - start


def set_arm(
    store: ExperimentStore,
    experiment: str,
    arm: str,
    version: str | None = None,
    weight: float | None = None,
    drop: bool = False,
) -> None:
    """Change one arm of ``experiment`` in one write: point it at ``version``, set its
    ``weight``, add it (needs a version), or drop it."""
    exp = store.get(experiment)
    arms = list(exp.arms)
    names = [a.name for a in arms]
    if drop:
        if arm not in names:
            raise KeyError(f"experiment {experiment!r} has no arm {arm!r}")
        arms = [a for a in arms if a.name != arm]
        if not arms:
            raise ValueError("an experiment needs at least one arm")
    elif arm in names:
        i = names.index(arm)
        a = arms[i]
        arms[i] = replace(
            a,
            model_version=version or a.model_version,
            index=version or a.index,
            weight=a.weight if weight is None else weight,
        )
    else:
        if version is None:
            raise ValueError(f"a new arm {arm!r} needs --version")
        service = arms[0].feature_service  # the profile features every arm reads
        arms.append(Arm(arm, 1.0 if weight is None else weight, version, service, version))
    store.put(replace(exp, arms=tuple(arms)))
    logger.info("experiment %s: arms %s", experiment, [(a.name, a.model_version, a.weight)
                                                       for a in arms])  # fmt: skip
