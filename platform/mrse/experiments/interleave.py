"""Team-draft interleaving (Radlinski et al. 2008; Chapelle et al. 2012): one list of ``k``
merged from two arms' rankings, each position credited to the arm ("team") that put it there.

Per round, a fair coin decides which team picks first; each team in turn adds its best item not
yet in the list. A shopper sees one list; a click credits the team that contributed the item,
and the arm whose items get more clicks wins that shopper. Both arms are judged on the same
shopper, query and moment, which is why interleaving needs far fewer shoppers than an A/B test
(``mrse ab simulate`` measures how many fewer).

Where both rankings' next item is the same, it is placed once and credited to neither team
(``SHARED``), as balanced interleaving treats agreement: a click on it cannot say which arm is
better, and plain team draft would hand it to whichever team the coin let pick first, which
only adds noise. Two identical rankings therefore give no credit at all, and the merge stays
fair: every other round still places one item of each team in coin-flipped order, so a shopper
who clicks at random favours neither arm.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

INTERLEAVED = "interleaved"  # the arm name an interleaved answer is served and logged under
SHARED = -1  # the team of an item both rankings put next: it credits neither arm


def team_draft(
    a: Sequence[str], b: Sequence[str], k: int, seed: str
) -> tuple[list[str], list[int]]:
    """Merge rankings ``a`` and ``b`` (item ids, best first) into at most ``k`` items.

    Returns (items, teams): ``teams[i]`` is 0 when ``a`` contributed item ``i``, 1 for ``b``,
    ``SHARED`` when it was both rankings' next item. The coin flips come from ``seed`` (the
    request id), so a request is merged the same way in every process.
    """
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    lists = (list(a), list(b))
    cursor = [0, 0]
    items: list[str] = []
    teams: list[int] = []
    taken: set[str] = set()

    def upcoming(team: int) -> str | None:
        ranking = lists[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in taken:
            cursor[team] += 1
        return ranking[cursor[team]] if cursor[team] < len(ranking) else None

    def place(item: str, team: int) -> None:
        items.append(item)
        teams.append(team)
        taken.add(item)

    while len(items) < k:
        nexts = (upcoming(0), upcoming(1))
        if nexts == (None, None):  # both rankings exhausted
            break
        if nexts[0] == nexts[1]:
            place(nexts[0], SHARED)
            continue
        for team in (0, 1) if rng.random() < 0.5 else (1, 0):
            item = upcoming(team)
            if len(items) < k and item is not None:
                place(item, team)
    return items, teams


def credit(teams: Sequence[int], clicked: Sequence[bool]) -> int:
    """Clicks on team 1's items minus clicks on team 0's, for one shown list (clicks on
    ``SHARED`` items count for neither)."""
    return sum((t == 1) - (t == 0) for t, c in zip(teams, clicked, strict=True) if c)
