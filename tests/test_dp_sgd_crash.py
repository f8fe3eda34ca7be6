"""kill -9 a real dp_sgd training run mid-way: it stays charged and the ledger verifies."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from privtrain import ledger
from privtrain.privacy.events import epsilon_pld


def _statuses(path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            return conn.execute("SELECT run_id, status FROM entries WHERE run_id IS NOT NULL ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []


@pytest.mark.slow
def test_kill_9_during_training_keeps_the_run_charged(tmp_path, ledger_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "privtrain.cli", "run", "dp_sgd", "recipe.epochs=400", "recipe.progress=false"],
        cwd=tmp_path,
        env={**os.environ, "PRIVTRAIN_LEDGER": str(ledger_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not any(s == "reserved" for _, s in _statuses(ledger_path)):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        assert any(s == "reserved" for _, s in _statuses(ledger_path)), "the run never reserved"
        time.sleep(3)  # now it is training
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    book = ledger.open(ledger_path)
    assert book.verify().ok
    statuses = _statuses(ledger_path)
    assert [s for _, s in statuses] == ["reserved"]  # never committed, never silently dropped
    reservation = [e for e in book.entries("digits") if e.status == "reserved"][0]
    assert book.spent("digits") == pytest.approx(epsilon_pld(reservation.events, 1e-5), rel=1e-3)
    assert book.spent("digits") == pytest.approx(3.0, rel=0.02)
    assert not list(tmp_path.rglob("metrics.json"))  # it died before writing results
