"""Demo output: the side-by-side HTML page (with product photos) and the terminal summary."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pandas as pd

from mrse.demo.feed import FeedShow
from mrse.demo.looks import PHOTO_ALONE, Look
from mrse.demo.names import NameSearch
from mrse.demo.searches import ArmResult, Showcase, Shown
from mrse.experiments.report import ArmReport

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{margin-bottom:4px} .sub{color:#666;margin-top:0}
table.t{border-collapse:collapse;margin:8px 0 16px}
.t td,.t th{border:1px solid #ddd;padding:4px 10px;text-align:right}
.t th:first-child,.t td:first-child{text-align:left}
.q{border-top:2px solid #ccc;padding-top:12px;margin-top:20px}
.q h2{margin:0 0 4px;font-size:20px} .meta{color:#666;font-size:13px;margin-bottom:6px}
.hist img{width:44px;height:60px;object-fit:cover;margin-right:3px;border:1px solid #ddd}
.arms{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.arm h3{margin:6px 0;font-size:15px} .arm h3 span{color:#666;font-weight:normal}
.grid{display:grid;grid-template-columns:repeat(5,1fr);gap:8px}
.card{border:1px solid #e3e3e3;border-radius:6px;padding:4px;font-size:11px;position:relative}
.card img{width:100%;height:150px;object-fit:contain;background:#fafafa}
.card .ti{height:28px;overflow:hidden} .card .sc{color:#555}
.rel2{border:3px solid #1a8f3a} .rel1{border:2px solid #9bd3a8}
.badge{position:absolute;top:6px;left:6px;background:#1a8f3a;color:#fff;
  border-radius:3px;padding:0 4px}
.rel1 .badge{background:#6cb67f}
.bar{display:flex;height:5px;margin-top:2px} .bar .tx{background:#4a78c2}
.bar .im{background:#e0943a}
.bar .pr{background:#9b59b6} .clicked{outline:3px dashed #d33}
.legend span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
"""


def _photo(item_id: str, images: dict[str, str], out: Path) -> str:
    """Copy the item's photo next to the page; returns its relative URL ('' if none)."""
    src = images.get(item_id)
    if not src or not Path(src).is_file():
        return ""
    dest = out / "images" / f"{item_id}{Path(src).suffix.lower() or '.jpg'}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return f"images/{dest.name}"


def _bar(s: Shown) -> str:
    parts = [("tx", max(s.text, 0.0)), ("im", max(s.image, 0.0)), ("pr", max(s.profile, 0.0))]
    total = sum(v for _, v in parts) or 1.0
    return (
        '<div class="bar">'
        + "".join(f'<div class="{c}" style="width:{100 * v / total:.0f}%"></div>' for c, v in parts)
        + "</div>"
    )


def _card(s: Shown, titles: dict[str, str], images: dict[str, str], out: Path, clicked) -> str:
    url = _photo(s.item_id, images, out)
    img = f'<img src="{url}" alt="">' if url else '<div style="height:150px">no photo</div>'
    badge = {2: '<div class="badge">bought</div>', 1: '<div class="badge">relevant</div>'}
    cls = f"card rel{s.relevance}" + (" clicked" if s.item_id == clicked else "")
    title = html.escape(titles.get(s.item_id, s.item_id))
    expl = f"text {s.text:+.2f} · image {s.image:+.2f} · profile {s.profile:+.2f}"
    return (
        f'<div class="{cls}" title="{html.escape(expl)}">{badge.get(s.relevance, "")}{img}'
        f'<div class="ti">{title}</div><div class="sc">score {s.score:.3f}</div>{_bar(s)}</div>'
    )


def _arm(r: ArmResult, show: Showcase, titles, images, out: Path) -> str:
    tag = " · assigned" if r.arm == show.assigned_arm else ""
    flags = " · personalised" if r.personalized else ""
    head = (
        f"<h3>{html.escape(r.arm)} <span>{html.escape(r.model_version)}{flags}{tag} · "
        f"nDCG@10 {r.metrics['ndcg@10']:.3f} · {r.latency_ms:.0f} ms</span></h3>"
    )
    cards = "".join(_card(s, titles, images, out, show.clicked) for s in r.items)
    return f'<div class="arm">{head}<div class="grid">{cards}</div></div>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="t"><tr>{th}</tr>{body}</table>'


def _names_section(names, arms: list[str], titles, images, out: Path) -> list[str]:
    """Product-name searches: the named product, its rank in each arm and who found it."""
    if not names:
        return []
    rows = []
    for s in names:
        first = s.relevant[0]
        url = _photo(first, images, out)
        img = f'<img src="{url}" style="height:48px">' if url else ""
        rank = [
            "-" if s.ranks.get(a) is None else f"{s.ranks[a]} ({html.escape(s.found_by[a])})"
            for a in arms
        ]
        rows.append([html.escape(s.cls), f"“{html.escape(s.query)}”",
                     f"{img} {html.escape(titles.get(first, first))}", *rank])  # fmt: skip
    return [
        "<h3>Searches by product name (the named product's rank in the top 10; the channel "
        "that found it)</h3>",
        _table(["kind", "query", "named product", *arms], rows),
    ]


def _looks_section(looks, titles, images, out: Path) -> list[str]:
    """More like this and shop by photo: the example, then the MRSE arm's first five."""
    if not looks:
        return []
    rows = []
    for look in looks:

        def pic(i: str, mark: bool = False) -> str:
            url = _photo(i, images, out)
            style = "height:64px" + (";outline:3px solid #1a8f3a" if mark else "")
            return f'<img src="{url}" style="{style}" title="{html.escape(titles.get(i, i))}">'

        note = f"{look.relevant}/{len(look.results)} relevant to its query"
        if look.kind == PHOTO_ALONE:
            note = "an item with no text; " + (
                "not in the top 10" if look.rank is None else f"found at rank {look.rank}"
            )
        elif look.kind == "photo":
            note = ("not in the top 10" if look.rank is None else f"found at rank {look.rank}") + (
                f"; {note}")  # fmt: skip
        rows.append([html.escape(look.kind), pic(look.seed), html.escape(note),
                     " ".join(pic(r, r == look.seed) for r in look.results[:5])])  # fmt: skip
    return [
        "<h3>More like this and shop by photo (the MRSE arm; a photo request sends the "
        "example's photo cropped, mirrored and recompressed)</h3>",
        _table(["request", "example", "", "first five results"], rows),
    ]


def _feed_section(feed, titles, images, out: Path) -> list[str]:
    """The home feed before and after the shopper's clicks, with the clicked items."""
    if feed is None:
        return []

    def pics(ids) -> str:
        return " ".join(
            f'<img src="{_photo(i, images, out)}" style="height:64px" '
            f'title="{html.escape(titles.get(i, i))}">'
            for i in ids[:8]
        )

    waited = "never changed" if feed.seconds is None else f"{feed.seconds * 1000:.0f} ms"
    rows = [
        ["before", f"{feed.share_before:.0%} {html.escape(feed.kind)}", pics(feed.before)],
        ["clicked", f"{len(feed.clicked)} items", pics(feed.clicked)],
        ["after", f"{feed.share_after:.0%} {html.escape(feed.kind)} ({waited})", pics(feed.after)],
    ]
    return [
        f"<h3>Home feed (Recommend, the MRSE arm) of shopper {html.escape(feed.user_id[:12])}, "
        "before and after a few clicks sent through Kafka</h3>",
        _table(["feed", "", "first eight"], rows),
    ]


def write_page(
    path: Path,
    dataset: str,
    items: pd.DataFrame,
    showcases: list[Showcase],
    means: dict[str, dict[str, float]],
    ab: list[ArmReport],
    models: dict[str, dict],
    names: list[NameSearch] = (),  # type: ignore[assignment]
    looks: list[Look] = (),  # type: ignore[assignment]
    feed: FeedShow | None = None,
) -> Path:
    """Write the HTML page (photos copied into ``images/`` beside it)."""
    out = path.parent
    out.mkdir(parents=True, exist_ok=True)
    titles = dict(zip(items["item_id"], items["title"], strict=True))
    images = {i: p for i, p in zip(items["item_id"], items["image"], strict=True) if p}
    summary = _table(
        ["arm", "model", "nDCG@10", "Recall@10", "HR@10 (bought)", "median latency"],
        [
            [
                html.escape(arm),
                html.escape(models.get(arm, {}).get("version", "")),
                f"{m['ndcg@10']:.3f}",
                f"{m['recall@10']:.3f}",
                f"{m['hr@10']:.3f}",
                f"{m['latency_ms_p50']:.1f} ms",
            ]
            for arm, m in means.items()
        ],
    )
    ab_table = _table(
        ["arm", "exposures", "clicked", "CTR", "95% CI"],
        [
            [html.escape(r.arm), str(r.exposures), str(r.clicked), f"{r.ctr:.1%}",
             f"{r.ci_low:.1%} – {r.ci_high:.1%}"]
            for r in ab
        ],
    )  # fmt: skip
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>MRSE demo: {dataset}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>MRSE demo · {html.escape(dataset)}</h1>",
        f'<p class="sub">{len(showcases)} judged queries, each served through the gRPC API by '
        "both arms (QA override) for the shopper who asked it, with the shopper's profile as the "
        "stream worker left it in the online feature store. Green: judged relevant (dark: the "
        "item the shopper actually bought). Red dashes: the simulated click.</p>",
        "<h3>Both arms on these queries</h3>",
        summary,
        "<h3>A/B report (assigned arm per shopper; simulated clicks)</h3>",
        ab_table,
        *_names_section(names, list(models), titles, images, out),
        *_looks_section(looks, titles, images, out),
        *_feed_section(feed, titles, images, out),
        '<div class="legend">score explanation:<span style="background:#4a78c2"></span>text'
        '<span style="background:#e0943a"></span>image<span style="background:#9b59b6"></span>'
        "profile (hover a card for the numbers)</div>",
    ]
    for s in showcases:
        hist = "".join(
            f'<img src="{u}" title="{html.escape(titles.get(i, i))}">'
            for i in s.history
            if (u := _photo(i, images, out))
        )
        who = f"shopper {html.escape(s.user_id[:12])}…" if s.user_id else "anonymous"
        parts.append(
            f'<div class="q"><h2>“{html.escape(s.query)}”</h2>'
            f'<div class="meta">{who} · {s.profile_events} events in the online profile · '
            f"assigned arm: {html.escape(s.assigned_arm)}</div>"
            f'<div class="hist">{hist}</div><div class="arms">'
            + "".join(_arm(r, s, titles, images, out) for r in s.arms.values())
            + "</div></div>"
        )
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def format_showcases(showcases: list[Showcase], items: pd.DataFrame, n: int = 5, top: int = 5):
    """The first ``n`` queries as text: each arm's top ``top`` titles side by side."""
    titles = dict(zip(items["item_id"], items["title"], strict=True))
    mark = {2: "**", 1: "+ ", 0: "  "}
    lines = []
    for s in showcases[:n]:
        arms = list(s.arms.values())
        lines.append(f'\n"{s.query}"  (profile: {s.profile_events} events)')
        lines.append("".join(f"   {a.arm + ' / ' + a.model_version:<44}" for a in arms))
        for i in range(top):
            row = ""
            for a in arms:
                if i < len(a.items):
                    it = a.items[i]
                    title = titles.get(it.item_id, it.item_id)[:42]
                    row += f" {mark[min(it.relevance, 2)]}{title:<44}"
                else:
                    row += " " * 47
            lines.append(row)
    lines.append("\n(** the item the shopper bought, + judged relevant)")
    return "\n".join(lines)
