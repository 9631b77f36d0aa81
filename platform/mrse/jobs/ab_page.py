"""An experiment's unit-level report for people: the console table, an HTML page with plots, and
the simulator's figure."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def format_unit_report(r: dict) -> str:
    """The console view of ``mrse.experiments.analysis.experiment_report``."""
    lines = [f"experiment {r['experiment']} (per unit; {r['qa']} QA exposures left out)"]
    lines.append(f"{'arm':<16} {'units':>7} {'exposures':>9} {'CTR':>7}  95% CI (units)"
                 f"  {'CTR/unit':>8} {'clicks/unit':>11}")  # fmt: skip
    for a in r["arms"]:
        lines.append(f"{a['arm']:<16} {a['units']:>7} {a['exposures']:>9} {a['ctr']:>7.2%}  "
                     f"[{a['ctr_low']:.2%}, {a['ctr_high']:.2%}]  {a['ctr_per_unit']:>8.2%} "
                     f"{a['clicks_per_unit']:>11.2f}")  # fmt: skip
    if "srm_p_value" in r:
        lines.append(f"sample ratio mismatch: p = {r['srm_p_value']:.3g}")
    if "cuped_variance_reduction" in r:
        lines.append(f"CUPED: variance of CTR per unit cut by {r['cuped_variance_reduction']:.1%}")
    for c in r.get("comparisons", []):
        for m in c["metrics"]:
            s = m["sequential"]
            lines.append(
                f"{c['treatment']} vs {c['control']}, {m['metric']}: "
                f"{m['fixed']['estimate']:+.4f} ({m['lift']:+.1%}); always-valid "
                f"[{s['low']:+.4f}, {s['high']:+.4f}], p = {s['p_value']:.3g}"
            )
    if "interleaving" in r:
        i = r["interleaving"]
        lines.append(f"interleaving {i['treatment']} vs {i['control']}: {i['units']} units, wins "
                     f"{i['wins']}, losses {i['losses']}, ties {i['ties']}; preference "
                     f"{i['preference']:+.3f} [{i['low']:+.3f}, {i['high']:+.3f}]")  # fmt: skip
    lines.append(f"decision: {r['decision']}")
    return "\n".join(lines)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_ab_page(r: dict, path: Path) -> Path:
    """An HTML page: the decision, per-arm click-through with unit-level intervals, and the
    comparisons' fixed-horizon against always-valid intervals."""
    figs = []
    if r["arms"]:
        fig, ax = plt.subplots(figsize=(6, 3))
        names = [a["arm"] for a in r["arms"]]
        ctr = [a["ctr"] for a in r["arms"]]
        err = [[a["ctr"] - a["ctr_low"] for a in r["arms"]],
               [a["ctr_high"] - a["ctr"] for a in r["arms"]]]  # fmt: skip
        ax.bar(names, ctr, yerr=err, capsize=6, color="#4a78c2")
        ax.set_ylabel("click-through (95% CI over units)")
        figs.append(_png(fig))
    comps = [(c["treatment"], m) for c in r.get("comparisons", []) for m in c["metrics"]]
    if comps:
        fig, ax = plt.subplots(figsize=(6, 0.6 + 0.7 * len(comps)))
        labels = {"fixed": "fixed horizon (one look)", "sequential": "always valid (any look)"}
        for y, (_, m) in enumerate(comps):
            for dy, key, colour in ((-0.12, "fixed", "#999"), (0.12, "sequential", "#d33")):
                s = m[key]
                ax.plot([s["low"], s["high"]], [y + dy] * 2, color=colour, lw=3,
                        label=None if y else labels[key])  # fmt: skip
            ax.plot(m["fixed"]["estimate"], y, "ko")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(comps)), [f"{a}: {m['metric']}" for a, m in comps])
        ax.set_xlabel("treatment - control")
        ax.legend(loc="best", fontsize=8)
        figs.append(_png(fig))
    body = "".join(f'<img src="data:image/png;base64,{f}">' for f in figs)
    text = html.escape(format_unit_report(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(r['experiment'])}"
        f"</title></head><body style='font-family:system-ui;max-width:900px;margin:24px'>"
        f"<h1>{html.escape(r['experiment'])}</h1><p style='font-size:18px'><b>"
        f"{html.escape(r['decision'])}</b></p>{body}<pre>{text}</pre></body></html>",
        encoding="utf-8",
    )
    return path


def plot_simulation(result: dict, path: Path) -> Path:
    """The simulator's figure: false positives under peeking, and units to detect."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    labels = ["A/B: per-exposure\nWilson (old report)", "A/B: always\nvalid, per unit"]
    rates = [result["aa_false_positive_rate_exposure_wilson"], result["aa_false_positive_rate"]]
    if "aa_false_positive_rate_interleaving" in result:  # looks every detect_every units
        labels.append("interleaving:\nalways valid")
        rates.append(result["aa_false_positive_rate_interleaving"])
    a.bar(labels, rates, color=["#999", "#d33", "#36c"][: len(rates)])
    a.axhline(0.05, color="k", ls="--", lw=0.8)
    a.set_ylabel("A/A false positives under peeking")
    a.tick_params(axis="x", labelsize=8)
    b.boxplot([result["units_to_detect_ab_runs"], result["units_to_detect_interleaving_runs"]],
              tick_labels=["A/B test\n(CTR per unit)", "interleaving"])  # fmt: skip
    b.set_yscale("log")
    b.set_ylabel("units until detected (95%, always valid)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
