"""The committed generated code matches proto/slicewire/v1/recorder.proto (run scripts/gen-proto)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_is_current(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    result = subprocess.run(
        ["bash", "scripts/gen-proto"], cwd=tmp_path, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("recorder_pb2.py", "recorder_pb2.pyi", "recorder_pb2_grpc.py"):
        fresh = (tmp_path / "proto/slicewire/v1" / name).read_text()
        committed = (ROOT / "proto/slicewire/v1" / name).read_text()
        assert fresh == committed, f"proto/slicewire/v1/{name} is stale: run scripts/gen-proto and commit"


def test_schema_is_versioned() -> None:
    from proto import pb

    assert pb.DESCRIPTOR.package == "slicewire.v1"
    assert {m for m in pb.DESCRIPTOR.message_types_by_name} >= {"Span", "SpanBatch", "Ack"}
