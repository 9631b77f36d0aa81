"""Multi-modal user profiles: one pure function from a user's events to their profile.

Training, offline evaluation and the stream worker all fold events through
:func:`update_profile`, so a served profile equals the one the model was trained on.

State is a set of recency-decayed sums relative to the newest event time. Adding an event
multiplies the sums by ``exp(-dt / tau)`` when it is newer than everything seen, or adds it
already decayed when it is older, so the result does not depend on arrival order (up to float
rounding) and an update costs O(D), never a replay of the history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class ProfileConfig:
    """How a profile forgets. ``half_life_days``: weight of an event halves every so many days."""

    half_life_days: float = 60.0
    recent_items: int = 20

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError("half_life_days must be > 0")
        if self.recent_items < 1:
            raise ValueError("recent_items must be >= 1")

    @property
    def tau_seconds(self) -> float:
        return self.half_life_days * SECONDS_PER_DAY / math.log(2.0)


@dataclass(frozen=True)
class ProfileEvent:
    """One interaction with the item's features. ``text``/``image`` are unit vectors or None."""

    item_id: str
    ts: float  # unix seconds
    category: str
    text: np.ndarray | None
    image: np.ndarray | None


@dataclass(frozen=True)
class ProfileState:
    """A user's profile as stored online.

    Attributes:
        text_sum: (Dt,) recency-weighted sum of the text vectors of the user's items.
        text_weight: sum of the weights that went into ``text_sum``.
        image_sum: (Di,) the same for photos.
        image_weight: likewise.
        ref_ts: the time the sums are decayed to (newest event, unix seconds; 0 when empty).
        count: events folded in.
        recent_items / recent_ts / recent_categories: the newest ``recent_items`` events,
            oldest first.
    """

    text_sum: np.ndarray
    text_weight: float
    image_sum: np.ndarray
    image_weight: float
    ref_ts: float
    count: int
    recent_items: tuple[str, ...]
    recent_ts: tuple[float, ...]
    recent_categories: tuple[str, ...]

    @property
    def last_ts(self) -> float:
        return self.ref_ts


def empty_profile(text_dim: int, image_dim: int) -> ProfileState:
    """The cold-start profile: no history, zero vectors."""
    return ProfileState(
        text_sum=np.zeros(text_dim),
        text_weight=0.0,
        image_sum=np.zeros(image_dim),
        image_weight=0.0,
        ref_ts=0.0,
        count=0,
        recent_items=(),
        recent_ts=(),
        recent_categories=(),
    )


def viewed_profile(cold: ProfileState, item_ids: Sequence[str], now: float) -> ProfileState:
    """A guest's profile from the items they just viewed (newest last), all at ``now`` (Unix
    seconds): what the late-fused query tower reads (the recent items, a history) and no
    pooled vectors (the server holds none for them: the modality features say "no
    preference")."""
    ids = tuple(item_ids)
    return replace(cold, ref_ts=now, count=len(ids), recent_items=ids,
                   recent_ts=(now,) * len(ids), recent_categories=("",) * len(ids))  # fmt: skip


def update_profile(state: ProfileState, event: ProfileEvent, config: ProfileConfig) -> ProfileState:
    """Fold one event into ``state`` and return the new state (``state`` is not modified)."""
    tau = config.tau_seconds
    if state.count == 0 or event.ts >= state.ref_ts:
        decay = math.exp(-(event.ts - state.ref_ts) / tau) if state.count else 0.0
        ref, w = event.ts, 1.0
    else:
        decay, ref, w = 1.0, state.ref_ts, math.exp(-(state.ref_ts - event.ts) / tau)
    text_sum, text_weight = state.text_sum * decay, state.text_weight * decay
    image_sum, image_weight = state.image_sum * decay, state.image_weight * decay
    if event.text is not None:
        text_sum = text_sum + w * event.text
        text_weight += w
    if event.image is not None:
        image_sum = image_sum + w * event.image
        image_weight += w
    # Keep the newest events, ordered by time; ties keep arrival order.
    recent = list(zip(state.recent_ts, state.recent_items, state.recent_categories, strict=True))
    pos = len(recent)
    while pos > 0 and recent[pos - 1][0] > event.ts:
        pos -= 1
    recent.insert(pos, (event.ts, event.item_id, event.category))
    recent = recent[-config.recent_items :]
    return replace(
        state,
        text_sum=text_sum,
        text_weight=text_weight,
        image_sum=image_sum,
        image_weight=image_weight,
        ref_ts=ref,
        count=state.count + 1,
        recent_ts=tuple(r[0] for r in recent),
        recent_items=tuple(r[1] for r in recent),
        recent_categories=tuple(r[2] for r in recent),
    )


def profile_from_events(
    events: Iterable[ProfileEvent], config: ProfileConfig, text_dim: int, image_dim: int
) -> ProfileState:
    """The profile after ``events`` (any order), starting from cold start."""
    state = empty_profile(text_dim, image_dim)
    for event in events:
        state = update_profile(state, event, config)
    return state


@dataclass(frozen=True)
class ProfileVectors:
    """What the query tower reads from a profile.

    Attributes:
        text: (Dt,) recency-weighted mean text vector (zeros for no text history).
        image: (Di,) the same for photos.
        modality: (4,) [text coherence, image coherence, image share, log1p(count)].
        has_history: whether any event was folded in.
    """

    text: np.ndarray
    image: np.ndarray
    modality: np.ndarray
    has_history: bool


def modality_preference(state: ProfileState) -> tuple[float, float, float]:
    """(text coherence, image coherence, image share).

    Coherence is the length of the weighted mean of the user's (centred, unit) item vectors
    in that modality: 1 when every choice looks alike there, near 0 when choices are unrelated.
    Image share = image / (text + image) coherence: how much more the photos than the texts
    explain what the user picks; 0.5 when neither says anything.
    """
    coh_t = float(np.linalg.norm(state.text_sum) / state.text_weight) if state.text_weight else 0.0
    coh_i = (
        float(np.linalg.norm(state.image_sum) / state.image_weight) if state.image_weight else 0.0
    )
    total = coh_t + coh_i
    return coh_t, coh_i, (coh_i / total if total > 0 else 0.5)


def profile_vectors(state: ProfileState) -> ProfileVectors:
    """Normalised view of ``state`` for the model."""
    text = (
        state.text_sum / state.text_weight if state.text_weight else np.zeros_like(state.text_sum)
    )
    image = (
        state.image_sum / state.image_weight
        if state.image_weight
        else np.zeros_like(state.image_sum)
    )
    coh_t, coh_i, share = modality_preference(state)
    return ProfileVectors(
        text=text.astype(np.float32),
        image=image.astype(np.float32),
        modality=np.array([coh_t, coh_i, share, math.log1p(state.count)], dtype=np.float32),
        has_history=state.count > 0,
    )
