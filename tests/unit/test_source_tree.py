"""Running the platform as documented leaves the source tree as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


def test_no_database_file_is_tracked():
    tracked = _git("ls-files").stdout.split()
    assert not [f for f in tracked if f.endswith((".db", ".sqlite", ".sqlite3"))]


def test_example_configs_write_only_into_ignored_folders():
    """Every local file a shipped serving config makes the server write (experiments table,
    feature store, index) lies under a folder git ignores."""
    for name in ("serve.yaml",):
        cfg = yaml.safe_load((REPO / "configs" / name).read_text())
        written = [
            cfg["experiments_url"].removeprefix("sqlite:///"),
            f"{cfg['feature_store']['data_dir']}/online_store.db",
            f"{cfg['index']['root']}/x",
        ]
        for path in written:
            assert not Path(path).is_absolute()
            assert _git("check-ignore", "-q", path).returncode == 0, f"{name}: {path} not ignored"
