"""Stable, stateless assignment of experiment units to arms.

An experiment randomises by ``user`` (the default), ``session`` (a guest keeps one arm for the
whole session) or ``request``. A request that lacks the unit's id is assigned by the next id it
has, and counted as such (``Exposure.unit_fallback``): ``user`` falls back to the session, then
the request; ``session`` to the user, then the request. A guest with a session id therefore
sees one arm for the whole session under either unit. An ``interleave`` experiment has two arms
and shows every unit both, merged (``mrse.experiments.interleave``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

RETRIEVALS = ("dense", "hybrid")
UNITS = ("user", "session", "request")
KINDS = ("ab", "interleave")
# which ids stand for a unit, in order, when a request lacks the unit's own
UNIT_IDS = {"user": ("user", "session", "request"), "session": ("session", "user", "request"),
            "request": ("request",)}  # fmt: skip


@dataclass(frozen=True)
class Arm:
    """One arm: a model version with its feature service and index, a traffic weight, and how
    it retrieves: ``dense`` (the towers' vectors alone) or ``hybrid`` (fused with the lexical
    channel, ``mrse.index.hybrid``)."""

    name: str
    weight: float
    model_version: str
    feature_service: str
    index: str
    retrieval: str = "dense"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an arm needs a name")
        if not self.weight >= 0:
            raise ValueError(f"arm {self.name!r}: weight must be >= 0")
        if self.retrieval not in RETRIEVALS:
            raise ValueError(
                f"arm {self.name!r}: retrieval must be one of {', '.join(RETRIEVALS)}, "
                f"got {self.retrieval!r}"
            )


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    salt: str = ""
    unit: str = "user"  # what is randomised: user, session or request
    kind: str = "ab"  # ab: each unit sees one arm; interleave: both arms' results, merged

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError(f"experiment {self.name!r} has no arms")
        if self.unit not in UNITS:
            raise ValueError(f"experiment {self.name!r}: unit must be one of {', '.join(UNITS)}")
        if self.kind not in KINDS:
            raise ValueError(f"experiment {self.name!r}: kind must be one of {', '.join(KINDS)}")
        if self.kind == "interleave" and len(self.arms) != 2:
            raise ValueError(f"experiment {self.name!r}: interleaving needs exactly two arms")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r}: arm names must be unique")
        if sum(a.weight for a in self.arms) <= 0:
            raise ValueError(f"experiment {self.name!r}: weights must not all be zero")

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"experiment {self.name!r} has no arm {name!r}")


def bucket(user_id: str, experiment: str, salt: str = "") -> float:
    """A uniform number in [0, 1) from (experiment, salt, user): same inputs, same number,
    in every process and on every machine (no Python hash randomisation)."""
    digest = hashlib.sha256(f"{experiment}\x1f{salt}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def unit_of(
    experiment: Experiment, user_id: str | None, session_id: str | None, request_id: str
) -> tuple[str, str]:
    """(the id a request is assigned by, which id that is: ``user``, ``session`` or
    ``request``), by the experiment's unit and the fallback order of ``UNIT_IDS``."""
    ids = {"user": user_id, "session": session_id, "request": request_id}
    for kind in UNIT_IDS[experiment.unit]:
        if ids[kind]:
            return str(ids[kind]), kind
    return request_id, "request"


def assign_arm(user_id: str, experiment: Experiment, override: str | None = None) -> Arm:
    """The arm the unit ``user_id`` (a user, session or request id: ``unit_of``) sees.
    ``override`` (QA) forces a named arm.

    Weights are relative; changing one arm's weight moves only the users at the boundary.
    """
    if override:
        return experiment.arm(override)
    total = sum(a.weight for a in experiment.arms)
    u = bucket(user_id, experiment.name, experiment.salt) * total
    edge = 0.0
    for arm in experiment.arms:
        edge += arm.weight
        if u < edge:
            return arm
    return experiment.arms[-1]  # float rounding at the very top
