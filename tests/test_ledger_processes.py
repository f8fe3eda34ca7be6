"""Real processes: racing reservations never overspend; a killed run stays charged (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import signal
import time

import pytest
from ledger_helpers import FP, charge, cli, filter_admits, fresh_pld, gaussian, run, worker

from privtrain import ledger

SIGMA = 3.0  # each racer's events: one Gaussian, σ=3
N_PROCS = 16


@pytest.mark.slow
@pytest.mark.parametrize("round_", [1, 2, 3])
def test_racing_processes_never_overspend(tmp_path, ledger_at, round_):
    """16 processes race for a budget that fits fewer runs; 3 rounds per backend, each on a fresh ledger."""
    path = ledger_at
    led = ledger.open(path)
    led.set_budget(FP, "example", 4.0, 1e-5)
    fits = max(k for k in range(1, 20) if filter_admits(k, SIGMA, 4.0, 1e-5))
    assert 2 <= fits < N_PROCS
    go = tmp_path / "go"
    procs = [worker(str(path), f"racer-{i}", str(SIGMA), "--go-file", str(go)) for i in range(N_PROCS)]
    for p in procs:  # every process has imported, opened the ledger and walked its chain ...
        assert json.loads(p.stdout.readline())["status"] == "ready"
    go.touch()  # ... then they race at once
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode in (0, 3), stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    admitted = [r for r in results if r["status"] == "committed"]
    refused = [r for r in results if r["status"] == "refused"]
    print(
        f"{led.backend} round {round_}: {len(admitted)} of {N_PROCS} admitted, the filter allows {fits}; "
        f"overspend {len(admitted) - fits}"
    )
    assert len(admitted) == fits and len(refused) == N_PROCS - fits
    for r in refused:
        assert r["message"].startswith("over budget:") and "remaining ε=" in r["message"]
        assert "largest this run could still use" in r["message"]
    led = ledger.open(path)
    assert led.filter_epsilon(FP) <= 4.0 and led.spent(FP) <= 4.0
    assert led.spent(FP) == pytest.approx(fresh_pld(list(gaussian(SIGMA) * fits), 1e-5), rel=1e-6)
    assert led.verify().ok and len(led.entries()) == 1 + 2 * fits


@pytest.mark.slow
def test_killed_run_stays_charged_and_ledger_verifies(ledger_at):
    path = ledger_at
    led = ledger.open(path)
    led.set_budget(FP, "example", 8.0, 1e-5)
    run(led, charge("before", gaussian(5.0)))
    p = worker(str(path), "victim", str(SIGMA), "--hang")
    line = p.stdout.readline()  # wait until it holds its reservation, mid-"training"
    assert json.loads(line)["status"] == "reserved"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    led = ledger.open(path)
    assert led.verify().ok
    assert [(e.run_id, e.status) for e in led.entries()][-1] == ("victim", "reserved")
    expected = fresh_pld(list(gaussian(5.0) + gaussian(SIGMA)), 1e-5)
    assert led.spent(FP) == pytest.approx(expected, rel=1e-6)  # charged at its reservation
    stale = cli("runs", "--stale", path=path)
    assert stale.returncode == 0 and "victim" in stale.stdout and "stale (process gone)" in stale.stdout
    out = cli("reconcile", path=path)
    assert out.returncode == 0 and "closed run victim as failed" in out.stdout
    assert [(e.run_id, e.status) for e in led.entries()][-1] == ("victim", "failed")
    assert led.spent(FP) == pytest.approx(expected, rel=1e-6)  # still charged
    assert "no open reservation" in cli("runs", "--stale", path=path).stdout
    run(led, charge("after", gaussian(20.0)))  # the ledger is still usable
    out = cli("verify", path=path)
    assert out.returncode == 0 and "ledger ok: 7 entries, hash chain intact" in out.stdout


@pytest.mark.slow
def test_long_lived_handles_while_runs_subprocesses_and_other_processes_write(tmp_path):
    """The first release corrupted its file here: a handle's locks were dropped under it. Now the file stays sound."""
    import sqlite3
    import subprocess
    import sys

    path = tmp_path / "l.db"
    writer, reader = ledger.open(path), ledger.open(path)  # held for the whole test, like a notebook's
    writer.set_budget(FP, "example", 1e6, 1e-5)
    start = time.time() + 6
    others = [worker(str(path), f"other-{i}", "30", "--start-at", str(start)) for i in range(3)]
    for i in range(6):
        run(writer, charge(f"here-{i}", gaussian(30.0)))
        assert reader.sources()[0].n_runs >= i + 1  # a second handle reads while the file changes
        out = cli("budget", "set", FP, "--epsilon", str(1e6 + i), "--delta", "1e-5", path=path)
        assert out.returncode == 0, out.stderr
        assert cli("show", path=path).returncode == 0
    for p in others:
        p.communicate(timeout=300)
        assert p.returncode == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert writer.verify().ok and reader.verify().ok
    assert {e.run_id for e in reader.entries() if e.status == "committed"} == {f"here-{i}" for i in range(6)} | {
        f"other-{i}" for i in range(3)
    }
    out = subprocess.run(
        [sys.executable, "-m", "privtrain.ledger", "verify", "--path", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "hash chain intact" in out.stdout
