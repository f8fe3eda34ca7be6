"""Shared pieces for the ledger tests: charges, fresh dp-accounting results, subprocess runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dp_accounting

from privtrain import ledger
from privtrain.privacy import events as ev

ROOT = Path(__file__).resolve().parents[2]
FP = "d1" * 32  # a fake 64-hex dataset fingerprint
FP2 = "e2" * 32


def gaussian(sigma: float, steps: int = 1) -> tuple:
    """Cheap events (closed-form Gaussian PLD) for tests where only the bookkeeping matters."""
    g = dp_accounting.GaussianDpEvent(float(sigma))
    return (g if steps == 1 else dp_accounting.SelfComposedDpEvent(g, steps),)


def sgd(q: float, sigma: float, steps: int) -> tuple:
    return (ev.dp_sgd_event(sample_rate=q, noise_multiplier=sigma, steps=steps),)


def charge(
    run_id: str = "run-1",
    events: tuple | None = None,
    *,
    fp: str = FP,
    name: str = "patients",
    unit: str = "example",
    delta: float = 1e-5,
    epsilon: float | None = None,
    **kw,
) -> ledger.Charge:
    """A charge on source ``fp`` (a fake 64-hex key that is also the table's fingerprint)."""
    events = events if events is not None else gaussian(4.0)
    eps = epsilon if epsilon is not None else fresh_pld(list(events), delta)
    return ledger.Charge(
        run_id=run_id,
        recipe="dp_sgd",
        source=fp,
        source_name=name,
        fingerprint=fp,
        unit=unit,
        events=tuple(events),
        delta=delta,
        epsilon=eps,
        config_hash="cfg-" + run_id,
        **kw,
    )


def charging(led: ledger.Ledger, *charges: ledger.Charge):
    """Admit hand-built charges: the ledger's door minus building the charges from a request (and so
    without a policy), for tests of admission, composition and storage."""
    from privtrain.ledger import admission

    return admission.admitted(led.core, charges)


def plan_of(led: ledger.Ledger, *charges: ledger.Charge) -> ledger.RunPlan:
    """The plan of hand-built charges, with their PLD estimates (read-only)."""
    from privtrain.ledger import admission, estimates

    return admission.RunPlan(tuple(estimates.estimate(led.core, admission.plan_charge(led.core, c)) for c in charges))


def run(led: ledger.Ledger, c: ledger.Charge, artifacts: dict | None = None):
    """Reserve and commit ``c``; returns the committed entry."""
    with charging(led, c) as r:
        return r.commit(c.events, artifacts=artifacts or {"model.pt": "00" * 32})[0]


def fresh_pld(events: list, delta: float) -> float:
    """A fresh dp-accounting PLD result, bypassing privtrain's grouping and the ledger's cache."""
    acc = dp_accounting.pld.PLDAccountant()
    acc.compose(dp_accounting.ComposedDpEvent(list(events)))
    return float(acc.get_epsilon(delta))


def filter_admits(n_runs: int, sigma: float, budget_epsilon: float, budget_delta: float) -> bool:
    """Oracle for the RDP filter on n Gaussian runs of multiplier σ: RDP is α/(2σ²) in closed form."""
    import math

    from privtrain.ledger.filter import ORDERS

    slack = math.log(len(ORDERS) / budget_delta)
    return any(n_runs * a / (2 * sigma**2) <= budget_epsilon - slack / (a - 1) for a in ORDERS)


def fresh_rdp(events: list, delta: float) -> float:
    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(dp_accounting.ComposedDpEvent(list(events)))
    return float(acc.get_epsilon(delta))


def env() -> dict:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    return out


def cli(*args: str, path: Path) -> subprocess.CompletedProcess:
    """``python -m privtrain.ledger ARGS --path PATH`` in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "privtrain.ledger", *args, "--path", str(path)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=120,
    )


def worker(*args: str, **popen) -> subprocess.Popen:
    """Start tests/ledger_helpers/worker.py in a separate process."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("worker.py")), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
        **popen,
    )


def dumps(obj) -> str:
    return json.dumps(obj)
