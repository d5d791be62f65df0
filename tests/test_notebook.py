"""notebooks/explore_traces.ipynb, executed (nbclient) against a live recorder fed by a real gateway."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.recorder.test_e2e_recording import calls_made, recording_config, sent
from tests.support.gateway import RunningGateway
from tests.support.procs import wait_until
from tests.support.recorder import RunningRecorder

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def test_explore_traces_notebook_runs(
    backends: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path)
    gw = RunningGateway(recording_config(backends, rec.target, tmp_path / "spool"), tmp_path)
    try:
        calls_made(gw, 12, 0)
        wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="spans sent")
        notebook = nbformat.read(ROOT / "notebooks" / "explore_traces.ipynb", as_version=4)
        monkeypatch.setenv("SLICEWIRE_RECORDER", rec.target)
        monkeypatch.setenv("MPLBACKEND", "Agg")
        NotebookClient(
            notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
        ).execute()
    finally:
        gw.stop()
        rec.stop()
    outputs = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "reading live recorder" in outputs
    assert "echo" in outputs  # slowest tools and percentiles name the tool that was called
    assert "/alpha" in outputs  # error rate by backend
    assert "plotted" in outputs and "spans of session" in outputs
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))
    assert os.environ.get("SLICEWIRE_RECORDER") == rec.target
