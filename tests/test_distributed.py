"""Multi-process DP-SGD under torchrun (2 CPU processes, gloo) and mixed precision on CPU.

The job must account exactly like one process with the same global settings, charge the ledger once
(rank 0), and leave one run directory; a refused job stops every rank with the same line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

import privtrain
from privtrain import ledger

SETTINGS = ["recipe.epochs=3", "recipe.progress=false", "recipe.batch_size=128", "privacy.target_epsilon=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, ledger_path, *args: str) -> subprocess.CompletedProcess:
    """torchrun with each rank's stdout and stderr in tmp_path/logs (torchrun's own report stays apart)."""
    env = {**os.environ, "PRIVTRAIN_LEDGER": str(ledger_path)}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
         f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "--rdzv-backend=c10d", "--redirects=3",
         f"--log-dir={tmp_path / 'logs'}", "-m", "privtrain.cli", "run", "dp_sgd", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)


def _rank_output(tmp_path, rank: int, stream: str) -> str:
    return "".join(p.read_text() for p in (tmp_path / "logs").rglob(f"{rank}/{stream}.log"))


def _runs(path) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = {}
    for e in ledger.open(path).entries():
        if e.run_id:
            runs.setdefault(e.run_id, []).append(e.status)
    return runs


@pytest.mark.slow
def test_two_processes_account_like_one_and_charge_the_ledger_once(tmp_path, ledger_path):
    single = privtrain.run("dp_sgd", SETTINGS, output_dir=tmp_path / "single")
    before = _runs(ledger_path)
    out = _torchrun(tmp_path, ledger_path, *SETTINGS)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "privtrain dp_sgd on source digits" in _rank_output(tmp_path, 0, "stdout")
    assert _rank_output(tmp_path, 1, "stdout") == ""  # rank 0 reports; rank 1 is silent
    new = {k: v for k, v in _runs(ledger_path).items() if k not in before}
    assert len(new) == 1 and sorted(next(iter(new.values()))) == ["committed", "reserved"]
    run_dirs = [p.parent for p in (tmp_path / "outputs").rglob("run.json")]
    assert len(run_dirs) == 1  # rank 1 wrote nothing
    import json

    record = json.loads((run_dirs[0] / "run.json").read_text())
    epsilon = record["guarantees"][0]["epsilon"]
    # Same σ, sampling rate (global batch / all training rows) and steps: the same ε as one process.
    assert epsilon == pytest.approx(single.guarantee.epsilon, rel=1e-9)
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())["metrics"]
    assert metrics["steps"] == single.metrics["steps"]
    assert metrics["accuracy"] > 0.8  # the ranks' halves of each batch were averaged into one model


@pytest.mark.slow
def test_a_refused_job_stops_every_rank_with_one_line_and_charges_nothing(tmp_path, ledger_path, cli):
    assert cli("ledger", "budget", "set", "digits", "--epsilon", "1", "--delta", "1e-5").returncode == 0
    before = ledger.open(ledger_path).entries()
    out = _torchrun(tmp_path, ledger_path, *SETTINGS)
    assert out.returncode != 0
    # Each rank prints the same one line and no traceback (torchrun's own report of the failed ranks aside).
    errors = [_rank_output(tmp_path, rank, "stderr").strip().splitlines() for rank in (0, 1)]
    assert errors[0] == errors[1] and len(errors[0]) == 1, errors
    assert errors[0][0].startswith("privtrain: error:") and "budget" in errors[0][0]
    assert ledger.open(ledger_path).entries() == before


def test_mixed_precision_trains_with_the_same_guarantee(tmp_path, ledger_path):
    from conftest import TINY

    plain = privtrain.run("dp_sgd", [*TINY, "recipe.epochs=3"], output_dir=tmp_path / "fp32")
    amp = privtrain.run("dp_sgd", [*TINY, "recipe.epochs=3", "recipe.amp=true"], output_dir=tmp_path / "bf16")
    assert amp.guarantee.epsilon == pytest.approx(plain.guarantee.epsilon, rel=1e-12)  # accounting is unchanged
    assert amp.metrics["accuracy"] > 0.6  # bfloat16 forward passes still learn digits
    assert "amp: true" in (amp.output_dir / "config.yaml").read_text()
