"""What a batch of catalog events does to the indexes: a pure function of the events and the
worker's item state (tested on its own). Events for one item apply in order; an event whose
version is not above the item's last one is stale (a replay or a duplicate) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from mrse.catalog.events import CatalogEvent, ItemContent
from mrse.catalog.state import ItemState, content_hash


@dataclass
class ItemChange:
    """The net change to one item: ``encode`` (content given: compute vectors, write the whole
    point), ``patch`` (merge ``attributes`` into the payload) or ``delete``."""

    kind: Literal["encode", "patch", "delete"]
    item_id: str
    content: ItemContent | None = None
    attributes: dict = field(default_factory=dict)
    events: list[CatalogEvent] = field(default_factory=list)


@dataclass
class Plan:
    changes: dict[str, ItemChange]  # by item id, one net change each
    states: dict[str, ItemState]  # the new state of every item touched
    stale: list[CatalogEvent]  # events that changed nothing


def plan_batch(events: list[CatalogEvent], known: dict[str, ItemState]) -> Plan:
    """The net change per item of ``events`` (in order) over ``known`` (the stored states)."""
    states = {k: replace(v, attributes=dict(v.attributes)) for k, v in known.items()}
    changes: dict[str, ItemChange] = {}
    stale: list[CatalogEvent] = []
    for e in events:
        prev = states.get(e.item_id)
        if prev is not None and e.version <= prev.version:
            stale.append(e)
            continue
        change = changes.get(e.item_id)
        if e.kind == "delete":
            states[e.item_id] = ItemState(e.version, deleted=True)
            changes[e.item_id] = ItemChange("delete", e.item_id, events=[e])
            continue
        if e.kind == "patch":
            if prev is not None and prev.deleted:
                states[e.item_id] = replace(prev, version=e.version)  # patching a deleted item
                stale.append(e)
                continue
            attrs = {**(prev.attributes if prev else {}), **e.attributes}
            states[e.item_id] = ItemState(e.version, False, prev.content if prev else None, attrs)
            if change is None:  # (a delete in this batch left a tombstone: handled above)
                changes[e.item_id] = change = ItemChange("patch", e.item_id)
            change.attributes.update(e.attributes)  # into a patch, or an encode's payload
            change.events.append(e)
            continue
        assert e.content is not None
        chash = content_hash(e.content)
        same = (
            prev is not None
            and not prev.deleted
            and prev.content_hash == chash
            and not (e.attributes.get("price") is None and prev.attributes.get("price") is not None)
        )
        states[e.item_id] = ItemState(e.version, False, e.content, dict(e.attributes))
        if same and (change is None or change.kind == "patch"):
            attrs = {**(change.attributes if change else {}), **e.attributes}
            changes[e.item_id] = ItemChange(
                "patch", e.item_id, attributes=attrs, events=[*(change.events if change else []), e]
            )
        else:
            changes[e.item_id] = ItemChange(
                "encode", e.item_id, e.content, dict(e.attributes),
                [*(change.events if change else []), e],
            )  # fmt: skip
    touched = {e.item_id for e in events}
    return Plan(changes, {k: v for k, v in states.items() if k in touched}, stale)
