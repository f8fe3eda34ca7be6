"""Runs the approval and registry tests share: built once per module, copied per test (ledger, policy, run).

A run costs the most in these tests, so each module trains one per policy and every test works on a fresh
copy of the whole project folder (the ledger, its row key, its policy and the run). The run's record names
the original ledger, so tests pass ``--ledger`` to the copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import privtrain
from tests.conftest import TINY

LAUNCHER = "launcher"  # the login the runs are launched as


def class_policy(name: str, controls: str) -> str:
    """A policy with one rule and one risk class ``name`` on source digits, requiring ``controls`` (YAML flow)."""
    return (
        "version: 1\nrules:\n  - name: every-source\n    max_epsilon_per_run: 5\nrisk:\n  classes:\n"
        f"    {name}:\n      when: {{sources: [digits]}}\n      controls: {controls}\n"
    )


def build(base: Path, policy: str | None) -> Path:
    """Train the cheapest dp_sgd run under ``policy`` in ``base`` (ledger.db, policy.yaml, run/)."""
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("PRIVTRAIN_LEDGER", str(base / "ledger.db"))
        mp.setenv("XDG_DATA_HOME", str(base / "xdg-data"))
        mp.setenv("LOGNAME", LAUNCHER)
        mp.delenv("PRIVTRAIN_LEDGER_KEY", raising=False)
        mp.delenv("PRIVTRAIN_POLICY", raising=False)
        if policy is not None:
            (base / "policy.yaml").write_text(policy)
        privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=2"], output_dir=base / "run")
    finally:
        mp.undo()
    return base


def copy(built: Path, tmp_path: Path, monkeypatch) -> Path:
    """A fresh copy of a built project; PRIVTRAIN_LEDGER points at its ledger."""
    dst = tmp_path / "project"
    shutil.copytree(built, dst, ignore=shutil.ignore_patterns("xdg-data"))
    monkeypatch.setenv("PRIVTRAIN_LEDGER", str(dst / "ledger.db"))
    return dst


def as_user(monkeypatch, name: str) -> None:
    """Be ``name`` to the ledger: getpass reads $LOGNAME first (how a file ledger identifies people)."""
    monkeypatch.setenv("LOGNAME", name)
