"""`privtrain ledger …` in real processes: show, runs, export, plot; fast start-up (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from ledger_helpers import FP, ROOT, charge, cli, env, gaussian, run

from privtrain import ledger


@pytest.fixture
def path(ledger_at):
    p = ledger_at
    led = ledger.open(p)
    led.set_budget(FP, "example", 3.0, 1e-5)
    for i in range(3):
        run(led, charge(f"r{i}", gaussian(4.0)))
    run(led, charge("w", gaussian(6.0), fp="ab" * 32, name="clinic"))
    return p


def test_show(path):
    out = cli("show", path=path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    patients = next(ln for ln in lines if ln.startswith("patients"))
    clinic = next(ln for ln in lines if ln.startswith("clinic"))
    s = ledger.open(path).sources()[0]
    assert s.filter_epsilon > s.spent  # the filter certifies more than the PLD estimate
    for cell in (
        f"({FP[:8]})",
        "example",
        "3",
        "1e-05",
        f"{s.spent:.4g}",
        f"{s.filter_epsilon:.4g}",
        f"{s.naive_sum:.4g}",
        f"{s.remaining:.4g}",
    ):
        assert cell in patients.split()
    assert patients.split()[-1] == "3"  # runs
    assert "no budget: tracked, not enforced" in clinic
    assert "FILTER ε" in out.stdout and "adaptively chosen runs" in out.stdout


def test_show_starts_fast_and_imports_nothing_heavy(path):
    code = (
        "import sys; from privtrain.ledger.cli import main; rc = main(['show', '--path', sys.argv[1]]); "
        "heavy = [m for m in ('torch', 'flwr', 'sdv', 'matplotlib', 'dp_accounting') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env(), cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout  # each commit warmed the cache: show does not even load dp-accounting


def test_runs_and_prefix(path):
    out = cli("runs", FP[:6], path=path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("committed") == 3 and out.stdout.count("reserved") == 3 and "budget" in out.stdout


def test_export_json_and_csv(path, tmp_path):
    out = cli("export", "--format", "json", path=path)
    rows = json.loads(out.stdout)
    assert len(rows) == 9 and rows[1]["status"] == "reserved" and rows[1]["events"][0]["type"] == "GaussianDpEvent"
    assert rows[1]["source"] == FP and rows[1]["rdp"] and "row_hash" not in out.stdout
    target = tmp_path / "ledger.csv"
    out = cli("export", "--format", "csv", "--output", str(target), path=path)
    assert out.returncode == 0 and "wrote 9 entries" in out.stdout
    table = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["id"] for r in table] == [str(i) for i in range(1, 10)] and table[0]["hash"]


@pytest.mark.slow
def test_plot_writes_png(path, tmp_path):
    target = tmp_path / "burn.png"
    out = cli("plot", "patients", "--output", str(target), path=path)
    assert out.returncode == 0, out.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 5000


def test_register_wraps_into_a_parent_parser(path, capsys):
    import argparse

    from privtrain.ledger import cli as ledger_cli

    parser = argparse.ArgumentParser(prog="privtrain")
    ledger_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ledger", "--path", str(path), "verify"])
    assert args.func(args) == 0 and "hash chain intact" in capsys.readouterr().out
