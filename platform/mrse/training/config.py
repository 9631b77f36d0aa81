"""Training configuration: frozen dataclasses loaded from YAML and the environment
(``mrse.settings``), validated, logged once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mrse.data.shop_queries import QUERY_CLASSES
from mrse.features.profile import ProfileConfig
from mrse.models.config import ModelConfig
from mrse.settings import from_dict, load

ENV_PREFIX = "MRSE_TRAIN"


@dataclass(frozen=True)
class LossConfig:
    """Weights of the hybrid loss terms; a weight of 0 switches a term off."""

    softmax_weight: float = 1.0
    temperature: float = 0.05
    random_negatives: int = 1024
    triplet_weight: float = 0.5
    margin: float = 0.1
    hard_negatives: int = 8
    hard_pool: int = 64
    # where hard negatives are mined (mrse.sampling.hard_negatives): "memory", the newest
    # `memory_size` item embeddings of past batches (cost flat in the catalog; quality on hm and
    # myntra as good, docs/benchmarks.md "Scale"), or "index", exact search over the whole
    # catalog re-encoded every `refresh_every` steps (0.09x the examples/s at 1M items)
    mining: str = "memory"
    memory_size: int = 16_384
    # what hard negatives are mined with: "query", the whole query vector; "typed", the query's
    # own experts without the profile (mrse.models.towers.typed_intent), so the negatives are
    # items that match what was typed but were not bought, and only who the shopper is can
    # tell them from the positive (history-aware negatives)
    mine_with: str = "typed"
    consistency_weight: float = 0.1
    consistency_temperature: float = 0.1
    # modality distillation (mrse.losses.modality_distillation): each batch item that has text
    # and a photo is also encoded from its photo alone and from its text alone, and those views
    # are pulled to the item's full embedding; at most distill_items items a batch
    distill_weight: float = 0.5
    distill_temperature: float = 0.05
    distill_items: int = 512
    # the text-only view's teacher: the item's full view ("item"), or the mean full view of
    # its product's variants ("product": a text cannot tell which colour it is)
    distill_text_to: str = "item"
    # the sampled softmax again with the batch's items seen through one modality, every one of
    # them: photos gone (a photo service down), then text gone; each term at this weight
    single_modality_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "softmax_weight", "triplet_weight", "consistency_weight", "random_negatives",
            "distill_weight", "single_modality_weight",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"loss.{name} must be >= 0")
        if min(self.temperature, self.consistency_temperature, self.distill_temperature) <= 0:
            raise ValueError("temperatures must be > 0")
        if self.mining not in ("index", "memory"):
            raise ValueError(f"loss.mining must be 'index' or 'memory', got {self.mining!r}")
        if self.distill_text_to not in ("item", "product"):
            raise ValueError(
                f"loss.distill_text_to must be 'item' or 'product', got {self.distill_text_to!r}"
            )
        if self.mine_with not in ("query", "typed"):
            raise ValueError(f"loss.mine_with must be 'query' or 'typed', got {self.mine_with!r}")
        if self.memory_size < 1:
            raise ValueError("loss.memory_size must be >= 1")
        if self.softmax_weight == 0 and self.triplet_weight == 0:
            raise ValueError("at least one of softmax_weight and triplet_weight must be > 0")


@dataclass(frozen=True)
class ShopQueriesConfig:
    """Training queries generated from item text, as a shop's own log would have them (names,
    fragments, misspellings, brand + type, descriptions; ``mrse.data.shop_queries``): ``ratio``
    generated examples per example of the event log (0: none)."""

    ratio: float = 1.0
    classes: tuple[str, ...] = QUERY_CLASSES

    def __post_init__(self) -> None:
        if self.ratio < 0:
            raise ValueError("shop_queries.ratio must be >= 0")
        unknown = set(self.classes) - set(QUERY_CLASSES)
        if unknown:
            raise ValueError(
                f"shop_queries.classes: unknown {sorted(unknown)}; use {list(QUERY_CLASSES)}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    shop_queries: ShopQueriesConfig = field(default_factory=ShopQueriesConfig)
    # The share of the log's purchases without a query trained on as feed examples (no text,
    # the shopper's profile -> the item bought; mrse.training.examples.next_item_examples).
    # Off: on hm all of them cost search 4% and the query tower's feed vector generalised
    # badly; the served feed takes the shopper's items as interests instead (docs/model.md,
    # "The home feed").
    feed_examples: float = 0.0
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-5
    val_fraction: float = 0.1
    patience: int = 6  # validation is noisy (myntra: 4 stopped a run at its epoch 4 of 9)
    refresh_every: int = 20
    seed: int = 0
    # a safety cap on training time (feature encoding excluded): epochs and early stopping
    # decide; when the cap fires the run says so loudly and run.json's stopped_by records it
    max_minutes: float = 60.0
    threads: int = 0  # 0: torch default

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError("val_fraction must be in (0, 0.5)")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if not 0.0 <= self.feed_examples <= 1.0:
            raise ValueError("feed_examples must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Presets for `mrse train --model`: the baseline and the ablations differ only in switches.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "mrse": {},
    "text-tower": {
        "model": {
            "use_image": False,
            "use_profile": False,
            "text_dropout": 0.0,
            "photo_dropout": 0.0,
        },
        "loss": {"consistency_weight": 0.0, "distill_weight": 0.0},
    },
    "no-image": {
        "model": {"use_image": False, "text_dropout": 0.0, "photo_dropout": 0.0},
        "loss": {"consistency_weight": 0.0, "distill_weight": 0.0},
    },
    # MRSE as it was before "every modality": no text / photo dropout, no distillation
    "no-robustness": {
        "model": {"text_dropout": 0.0, "photo_dropout": 0.0},
        "loss": {"distill_weight": 0.0},
    },
    # MRSE trained on the event log's queries only (no queries generated from item text)
    "no-shop-queries": {"shop_queries": {"ratio": 0.0}},
    "no-profile": {"model": {"use_profile": False}},
    "no-lmoe": {"model": {"fusion": "concat"}},
    "no-hard-negatives": {"loss": {"triplet_weight": 0.0}},
    # the profile as it was before late fusion: a third expert in the query's softmax gate
    "gated-profile": {
        "model": {"profile_fusion": "gate", "profile_dropout": 0.0},
        "loss": {"mine_with": "query"},
    },
    # serving design, not an ablation: the query tower without the MiniLM query vector
    "ngram-query": {"model": {"use_query_text": False}},
}

# Presets in the order reports list them: the baseline first.
VARIANTS = (
    "text-tower", "mrse", "no-image", "no-profile", "no-lmoe", "no-hard-negatives",
    "no-robustness", "no-shop-queries",
)  # fmt: skip


def apply_overrides(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """Nested dict (as in the YAML file) over ``config``."""
    return from_dict(TrainConfig, values, config)


def load_config(preset: str = "mrse", path: str | Path | None = None) -> TrainConfig:
    """The ``preset`` defaults, then the YAML file at ``path`` (if any), then ``MRSE_TRAIN__*``
    environment variables (``MRSE_TRAIN__EPOCHS=3``, ``MRSE_TRAIN__MODEL__DIM=64``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model {preset!r}; choose one of {', '.join(PRESETS)}")
    return load(TrainConfig, path, ENV_PREFIX, base=apply_overrides(TrainConfig(), PRESETS[preset]))


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Inverse of ``TrainConfig.to_dict`` (used to reload a run). A run saved before a setting
    existed keeps the behaviour it was trained with, not today's default."""
    values = {**values, "model": dict(values.get("model", {}))}
    values["model"].setdefault("profile_fusion", "gate")  # before 2026-11-30: gated profile
    values["model"].setdefault("identity_dim", 0)  # before 2026-11-30's identity: none
    # before 2026-12-02 (training-only settings, recorded as they were)
    values["model"].setdefault("text_dropout", 0.0)
    values["model"].setdefault("photo_dropout", 0.0)
    values["loss"] = {"distill_weight": 0.0, **values.get("loss", {})}
    values.setdefault("shop_queries", {"ratio": 0.0})
    values.setdefault("feed_examples", 0.0)  # before the feed (2026-12-02): search only
    return from_dict(TrainConfig, values)
