"""Stable, stateless assignment of users to experiment arms."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

RETRIEVALS = ("dense", "hybrid")


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

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError(f"experiment {self.name!r} has no arms")
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


def assign_arm(user_id: str, experiment: Experiment, override: str | None = None) -> Arm:
    """The arm ``user_id`` sees. ``override`` (QA) forces a named arm.

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
