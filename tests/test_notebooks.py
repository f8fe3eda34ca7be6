"""Every notebook executes top to bottom (small settings via PRIVTRAIN_QUICK=1)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_committed_notebooks_are_what_their_sources_build():
    sys.path.insert(0, str(NOTEBOOKS[0].parent))
    try:
        import build_notebooks
    finally:
        sys.path.pop(0)
    assert sorted(build_notebooks.NOTEBOOKS) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:  # edit notebooks/build_notebooks.py, then run it: the ids of untouched cells stay
        assert path.read_text() == build_notebooks.render(path.name), f"{path.name}: run notebooks/build_notebooks.py"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("PRIVTRAIN_QUICK", "1")
    monkeypatch.delenv("PRIVTRAIN_LEDGER", raising=False)
    (tmp_path / ".privtrain").mkdir()  # a project: the notebook finds its ledger as git finds a repository
    (tmp_path / "notebooks").mkdir()  # ... from a subfolder, as a user runs notebooks/
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path / "notebooks")}}
    ).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(o.get("data", {}).get("image/png") for c in nb.cells if c.cell_type == "code" for o in c.outputs), (
        "a notebook shows at least one plot"
    )
    ledger_file = tmp_path / ".privtrain" / "notebooks" / f"{path.stem}.db"
    assert not (tmp_path / "notebooks" / ".privtrain").exists()  # found in the project, not per folder
    assert not (tmp_path / ".privtrain" / "ledger.db").exists()  # the project's own ledger is never touched
    if ledger_file.exists():  # the notebook's long-lived handles, runs and subprocesses left a sound file
        with sqlite3.connect(ledger_file) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        out = subprocess.run(
            [sys.executable, "-m", "privtrain.cli", "ledger", "verify", "--path", str(ledger_file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0 and "hash chain intact" in out.stdout, out.stdout + out.stderr
