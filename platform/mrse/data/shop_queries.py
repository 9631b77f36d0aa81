"""Queries a shop's own search log is full of, generated from any catalog in the layout.

A benchmark's test queries are one kind of query (``hm``: colour + product type; ``myntra``:
attribute combinations). Shoppers also type a product's name, part of it, a misspelling of it,
a brand and a product type, or describe the product at length. Each class below is generated
from item text alone, so it exists for any catalog, seen in training or not:

============  ==============================================  ================================
class         query                                           relevant (grade 1)
============  ==============================================  ================================
title         an item's title, as typed (words, lower case)   the items with that title
fragment      the run of 2+ of its title's words that the     the items whose title contains
              fewest titles contain                           that run
typo          the title with one word misspelt (two with 4+   the items with that title
              words): a letter dropped, doubled, swapped
              with its neighbour or replaced by a key beside it
brand-type    a brand and the last word of one of its         that brand's items whose title
              titles (``nike jersey``); catalogs with brands  has that word
description   the first 8-16 words of a description           the items with that description
============  ==============================================  ================================

The titles whose hash falls in one fifth are held out for evaluation (``split="eval"``);
training generates from the others (``split="train"``), so a name that is evaluated (or its
fragments and misspellings) was never a training query. Descriptions and brand + type pairs are
split the same way.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mrse.data.products import normal_title, words

QUERY_CLASSES = ("title", "fragment", "typo", "brand-type", "description")
Split = Literal["eval", "train"]
HELD_OUT = 5  # one product (or brand + type pair) in five is the evaluation's
MIN_DESCRIPTION_WORDS = 8
MAX_DESCRIPTION_WORDS = 16
MAX_FRAGMENT_MATCHES = 20  # a run of words that more titles contain does not name a product

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    c: "".join(
        _ROWS[r2][c2]
        for r2 in range(max(0, r - 1), min(3, r + 2))
        for c2 in range(max(0, i - 1), i + 2)
        if c2 < len(_ROWS[r2]) and _ROWS[r2][c2] != c
    )
    for r, row in enumerate(_ROWS)
    for i, c in enumerate(row)
}


def in_split(key: str, split: Split) -> bool:
    """Whether a title (a description, a brand + type pair) belongs to ``split``: a stable
    hash puts one in ``HELD_OUT`` in the evaluation's share, the rest in training's."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return (h % HELD_OUT == 0) == (split == "eval")


def misspell(word: str, rng: np.random.Generator) -> str:
    """``word`` with one typing error: a letter dropped, doubled, swapped with the next, or
    replaced by a key next to it on a QWERTY keyboard (never the first letter, never the word
    unchanged). Words shorter than 4 letters come back as they are."""
    if len(word) < 4:
        return word
    for _ in range(8):
        i = int(rng.integers(1, len(word)))
        op = int(rng.integers(4))
        if op == 0:
            out = word[:i] + word[i + 1 :]
        elif op == 1:
            out = word[:i] + word[i] + word[i:]
        elif op == 2 and i < len(word) - 1:
            out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        else:
            near = _NEIGHBOURS.get(word[i], "")
            out = word[:i] + near[int(rng.integers(len(near)))] + word[i + 1 :] if near else word
        if out != word:
            return out
    return word[:-1]


def typo_query(title_words: Sequence[str], rng: np.random.Generator) -> str | None:
    """The title with one word misspelt (two when it has 4+ words); None when no word has 4+
    letters."""
    long = [i for i, w in enumerate(title_words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return None
    out = list(title_words)
    n = 2 if len(title_words) >= 4 and len(long) >= 2 else 1
    for i in rng.choice(long, size=n, replace=False):
        out[int(i)] = misspell(out[int(i)], rng)
    return " ".join(out)


@dataclass(frozen=True)
class ShopQueries:
    """Generated queries in the dataset layout: ``queries`` (qid, query, user_id, ts, cls) and
    ``qrels`` (qid, item_id, relevance); anonymous, so no shopper history is read."""

    queries: pd.DataFrame
    qrels: pd.DataFrame

    def of_class(self, cls: str) -> ShopQueries:
        q = self.queries[self.queries["cls"] == cls]
        return ShopQueries(q, self.qrels[self.qrels["qid"].isin(set(q["qid"]))])

    def __len__(self) -> int:
        return len(self.queries)


class _Catalog:
    """The text facts the generators read, computed once per catalog."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.ids = items["item_id"].to_numpy(dtype=object)
        self.titles = [normal_title(t) for t in items["title"]]
        self.descriptions = [normal_title(d) for d in items["description"]]
        self.brands = [str(b).strip() for b in items["brand"]]
        self.by_title: dict[str, list[int]] = defaultdict(list)
        self.by_description: dict[str, list[int]] = defaultdict(list)
        for row, (t, d) in enumerate(zip(self.titles, self.descriptions, strict=True)):
            if t:
                self.by_title[t].append(row)
            if d:
                self.by_description[d].append(row)
        # word -> the distinct titles that contain it (for fragments)
        self.title_list = sorted(self.by_title)
        self.word_titles: dict[str, set[int]] = defaultdict(set)
        for j, t in enumerate(self.title_list):
            for w in t.split():
                self.word_titles[w].add(j)

    def titled_rows(self, split: Split) -> list[int]:
        """One row per distinct title of the split's products, in catalog order."""
        seen: set[str] = set()
        out = []
        for row, t in enumerate(self.titles):
            if t and t not in seen and in_split(t, split):
                seen.add(t)
                out.append(row)
        return out

    def titles_containing(self, run: Sequence[str]) -> list[str]:
        """The distinct titles that contain the words ``run`` next to each other, in order."""
        sets = [self.word_titles.get(w, set()) for w in run]
        found = set.intersection(*sets) if sets else set()
        padded = f" {' '.join(run)} "
        return [self.title_list[j] for j in found if padded in f" {self.title_list[j]} "]

    def fragment(self, title: str, rng: np.random.Generator) -> tuple[str, list[str]] | None:
        """The run of 2+ (but not all) words of ``title`` that the fewest titles contain, with
        those titles; None for titles under 3 words or when every run is too common."""
        ws = title.split()
        if len(ws) < 3:
            return None
        best: tuple[int, float, str, list[str]] | None = None
        for n in range(2, len(ws)):
            for s in range(len(ws) - n + 1):
                run = ws[s : s + n]
                found = self.titles_containing(run)
                cand = (len(found), float(rng.random()), " ".join(run), found)
                if best is None or cand[:2] < best[:2]:
                    best = cand
        if best is None or best[0] > MAX_FRAGMENT_MATCHES:
            return None
        return best[2], best[3]


def _draw(rows: list[int], n: int | None, rng: np.random.Generator) -> list[int]:
    if n is None or n >= len(rows):
        return list(rows)
    return [rows[i] for i in sorted(rng.choice(len(rows), size=n, replace=False).tolist())]


def generate_queries(
    items: pd.DataFrame,
    per_class: int | None = 400,
    seed: int = 0,
    split: Split = "eval",
    classes: Sequence[str] = QUERY_CLASSES,
) -> ShopQueries:
    """Up to ``per_class`` queries of each class in ``classes`` (None: all the split has) from
    ``items`` (the dataset layout's columns), with their judgements; the same inputs give the
    same queries."""
    unknown = set(classes) - set(QUERY_CLASSES)
    if unknown:
        raise ValueError(f"unknown query class(es) {sorted(unknown)}; use {QUERY_CLASSES}")
    cat = _Catalog(items)
    queries: list[tuple[str, str, str]] = []  # (qid, query, cls)
    qrels: list[tuple[str, str]] = []

    # a training query never names a held-out title (a fragment of one product can be the
    # whole title of another)
    held = {t for t in cat.by_title if in_split(t, "eval")} if split == "train" else set()

    def add(cls: str, text: str, rows: Sequence[int]) -> None:
        if text in held:
            return
        qid = f"{cls}-{len(queries)}"
        queries.append((qid, text, cls))
        qrels.extend((qid, str(cat.ids[r])) for r in sorted(set(rows)))

    for offset, cls in enumerate(classes):
        rng = np.random.default_rng([seed, offset])
        if cls in ("title", "fragment", "typo"):
            _titles(cat, cls, split, per_class, rng, add)
        elif cls == "brand-type":
            _brand_types(cat, split, per_class, rng, add)
        else:
            _descriptions(cat, split, per_class, rng, add)
    q = pd.DataFrame(queries, columns=["qid", "query", "cls"])
    q.insert(2, "user_id", None)
    q.insert(3, "ts", pd.Series(pd.NaT, index=q.index, dtype="datetime64[ns]"))
    r = pd.DataFrame(qrels, columns=["qid", "item_id"]).assign(relevance=1)
    return ShopQueries(q, r)


def _titles(cat: _Catalog, cls: str, split: Split, n: int | None, rng, add) -> None:
    rows = cat.titled_rows(split)
    made = 0
    for row in (rows[i] for i in rng.permutation(len(rows))):
        if n is not None and made >= n:
            break
        title = cat.titles[row]
        if cls == "title":
            add(cls, title, cat.by_title[title])
        elif cls == "typo":
            text = typo_query(title.split(), rng)
            if text is None:
                continue
            add(cls, text, cat.by_title[title])
        else:
            frag = cat.fragment(title, rng)
            if frag is None:
                continue
            text, titles = frag
            add(cls, text, [r for t in titles for r in cat.by_title[t]])
        made += 1


def _brand_types(cat: _Catalog, split: Split, n: int | None, rng, add) -> None:
    if len({b.casefold() for b in cat.brands if b}) < 2:
        return  # one brand (or none): "brand + type" is just the type
    pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, (brand, title) in enumerate(zip(cat.brands, cat.titles, strict=True)):
        ws = title.split()
        if brand and ws and ws[-1].isalpha() and len(ws[-1]) >= 3:
            pairs[(brand, ws[-1])].append(row)
    keys = [k for k in sorted(pairs) if in_split(f"{k[0].casefold()}|{k[1]}", split)]
    # drawn in proportion to the items, as a shop's log would have them
    weights = np.array([len(pairs[k]) for k in keys], dtype=float)
    if not keys:
        return
    take = len(keys) if n is None else min(n, len(keys))
    for i in rng.choice(len(keys), size=take, replace=False, p=weights / weights.sum()):
        brand, word = keys[int(i)]
        rows = [
            r
            for r, (b, t) in enumerate(zip(cat.brands, cat.titles, strict=True))
            if b == brand and word in t.split()
        ]
        add("brand-type", " ".join([*words(brand), word]), rows)


def _descriptions(cat: _Catalog, split: Split, n: int | None, rng, add) -> None:
    seen: set[str] = set()
    rows = []
    for row, d in enumerate(cat.descriptions):
        if len(d.split()) >= MIN_DESCRIPTION_WORDS and d not in seen and in_split(d, split):
            seen.add(d)
            rows.append(row)
    for row in _draw(rows, n, rng):
        d = cat.descriptions[row]
        size = int(rng.integers(MIN_DESCRIPTION_WORDS, MAX_DESCRIPTION_WORDS + 1))
        add("description", " ".join(d.split()[:size]), cat.by_description[d])
