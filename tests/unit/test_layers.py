"""The package is a stack: each subpackage imports only from its own layer or below, and no
two subpackages import each other, directly or round a circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "mrse"
# data -> encoders -> features -> models -> training / index / retrieval
#   -> evaluation / serving / streaming -> jobs -> cli (pure maths and logging at the bottom)
LAYERS = {
    "v1": 0, "logs": 0, "settings": 0, "metrics": 0, "losses": 0, "sampling": 0, "data": 0,
    "kafka_client": 0, "metrics_http": 0,
    "encoders": 1,
    "features": 2,
    "models": 3,
    "training": 4, "index": 4, "retrieval": 4,
    "evaluation": 5, "serving": 5, "streaming": 5, "experiments": 5, "catalog": 5,
    "jobs": 6, "demo": 6,
    "cli": 7,
}  # fmt: skip


def _imports() -> dict[str, set[str]]:
    """Subpackage -> the other subpackages it imports (anywhere in its files)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        src = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "mrse" and len(parts) > 1 and parts[1] != src:
                    edges[src].add(parts[1])
    return edges


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert subpackages | modules == set(LAYERS)


def test_imports_run_downward_only():
    upward = [
        f"{src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]})"
        for src, dsts in _imports().items()
        for dst in dsts
        if LAYERS[dst] > LAYERS[src]
    ]
    assert not upward, upward


def test_no_import_cycle_between_subpackages():
    edges = _imports()

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        if a == b:
            return True
        seen.add(a)
        return any(reaches(n, b, seen) for n in edges.get(a, ()) if n not in seen)

    cycles = [(s, d) for s in edges for d in edges[s] if reaches(d, s, set())]
    assert not cycles, cycles
