"""The package as a user installs it: a wheel in a fresh virtual environment, used from a
folder that is not the checkout (nothing may depend on the source tree's layout)."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_wheel_installs_and_runs_from_any_folder(tmp_path, sample_hm):
    # built from a copy: a build writes build/ and egg-info beside its sources
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "platform", src / "platform", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(src)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = dist.glob("mrse-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    # the dependencies come from the project's environment, appended after the venv's own
    # site-packages; a plain path line does not run that environment's editable-install hook
    (own,) = Path(venv / "lib").glob("python3*/site-packages")
    (own / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = """
import json, mrse
from pathlib import Path
from mrse.features.profile import ProfileConfig, ProfileEvent, profile_from_events
from mrse.features.store import FeatureStoreConfig, ProfileStore, StoredProfile
import numpy as np
store = ProfileStore(FeatureStoreConfig(data_dir=Path("feast")))
store.apply()
ev = [ProfileEvent("i1", 1.6e9, "c", np.ones(384), np.ones(1280))]
store.write({"u1": StoredProfile(profile_from_events(ev, ProfileConfig(), 384, 1280), ["e"])})
print(json.dumps({"module": mrse.__file__, "count": store.read(["u1"])["u1"].state.count}))
"""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(py), "-c", script], cwd=elsewhere, capture_output=True, text=True, timeout=600,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["module"].startswith(str(venv)) and out["count"] == 1
    assert not (REPO / "feature_repo" / "data").exists()
    # the console script of the wheel, on real data, from that folder
    done = subprocess.run(
        [str(venv / "bin" / "mrse"), "eval", "--data", str(sample_hm), "--model", "bm25",
         "--out", "bm25.json"],
        cwd=elsewhere, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((elsewhere / "bm25.json").read_text())["metrics"]["ndcg@10"] > 0
