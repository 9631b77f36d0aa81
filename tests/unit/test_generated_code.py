"""The committed protobuf code matches what `make proto` generates from proto/."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import REPO


def test_generated_code_is_current(tmp_path):
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    assert protos, "no .proto files found"
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", f"--python_out={tmp_path}"]
    cmd += [f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *protos]
    subprocess.run(cmd, cwd=REPO, check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated
    for rel in generated:
        committed = REPO / "platform" / rel
        assert committed.exists(), f"{rel} is not committed: run `make proto`"
        assert committed.read_text() == (tmp_path / rel).read_text(), (
            f"{rel} is stale: run `make proto`"
        )
