"""Team-draft interleaving (Radlinski et al. 2008; Chapelle et al. 2012): one list of ``k``
merged from two arms' rankings, each position credited to the arm ("team") that put it there.

Per round, a fair coin decides which team picks first; each team in turn adds its best item not
yet in the list. A shopper sees one list; a click credits the team that contributed the item,
and the arm whose items get more clicks wins that shopper. Both arms are judged on the same
shopper, query and moment, which is why interleaving needs far fewer shoppers than an A/B test
(``mrse ab simulate`` measures how many fewer).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

INTERLEAVED = "interleaved"  # the arm name an interleaved answer is served and logged under


def team_draft(
    a: Sequence[str], b: Sequence[str], k: int, seed: str
) -> tuple[list[str], list[int]]:
    """Merge rankings ``a`` and ``b`` (item ids, best first) into at most ``k`` items.

    Returns (items, teams): ``teams[i]`` is 0 when ``a`` contributed item ``i``, 1 for ``b``.
    The coin flips come from ``seed`` (the request id), so a request is merged the same way in
    every process.
    """
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    lists = (list(a), list(b))
    cursor = [0, 0]
    items: list[str] = []
    teams: list[int] = []
    taken: set[str] = set()
    while len(items) < k:
        order = (0, 1) if rng.random() < 0.5 else (1, 0)
        added = False
        for team in order:
            if len(items) >= k:
                break
            ranking = lists[team]
            while cursor[team] < len(ranking) and ranking[cursor[team]] in taken:
                cursor[team] += 1
            if cursor[team] < len(ranking):
                item = ranking[cursor[team]]
                items.append(item)
                teams.append(team)
                taken.add(item)
                added = True
        if not added:  # both rankings exhausted
            break
    return items, teams


def credit(teams: Sequence[int], clicked: Sequence[bool]) -> int:
    """Clicks on team 1's items minus clicks on team 0's, for one shown list."""
    return sum((1 if t == 1 else -1) for t, c in zip(teams, clicked, strict=True) if c)
