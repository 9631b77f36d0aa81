"""Which product an item is, and the words of a text as a shopper would type them.

The variants of one product (colours, sizes) share their title and description and differ in
photo; an item without text is its own product. The key is a catalog fact, used by the product
identity in the vectors (``mrse.features.identity``), by the shop-query generator (a held-out
product's name is never a training query) and by the repurchase reports.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def product_key(item_id: str, title: str | None, description: str | None) -> str:
    """The key shared by the variants of one product: ``title | description`` normalised, or
    the item's own id when it has no text."""
    text = " | ".join(_SPACE.sub(" ", (t or "").strip().lower()) for t in (title, description))
    return f"text:{text}" if text.strip(" |") else f"id:{item_id}"


def words(text: str | None) -> list[str]:
    """The words of ``text``, case-folded, punctuation dropped (any script: ``\\w+``)."""
    return _WORD.findall((text or "").casefold()) if text else []


def normal_title(text: str | None) -> str:
    """``text`` as its words joined by single spaces: two titles that a shopper would type
    the same way are equal (``"Lola Brazilian (Acacia) 3pk"`` -> ``"lola brazilian acacia
    3pk"``)."""
    return " ".join(words(text))
