"""Measure the ledger: `ledger show` and a pre-flight over 1,000 runs; tight vs naive for a 10-run sweep.

usage: python tests/ledger_helpers/bench.py [--runs 1000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dp_accounting  # noqa: E402

from ledger_helpers import ROOT, charging, env, plan_of  # noqa: E402
from privtrain import ledger  # noqa: E402
from privtrain.privacy import events as ev  # noqa: E402

Q, STEPS, DELTA = 256 / 1437, 60, 1e-5


def calibrate(eps: float) -> float:
    """Noise multiplier giving ε at δ for one DP-SGD run (PLD, the ledger's accountant)."""
    return dp_accounting.calibrate_dp_mechanism(
        lambda: dp_accounting.pld.PLDAccountant(),
        lambda s: ev.dp_sgd_event(sample_rate=Q, noise_multiplier=s, steps=STEPS),
        eps,
        DELTA,
        dp_accounting.ExplicitBracketInterval(0.3, 20.0),
        tol=1e-3,
    )


def charge(i: int, sigma: float, fp: str, name: str, eps: float) -> ledger.Charge:
    return ledger.Charge(
        run_id=f"run-{i}",
        recipe="dp_sgd",
        dataset_fingerprint=fp,
        dataset_name=name,
        unit="example",
        events=(ev.dp_sgd_event(sample_rate=Q, noise_multiplier=sigma, steps=STEPS),),
        delta=DELTA,
        epsilon=eps,
        config_hash=f"c{i}",
    )


def timed_show(path: Path) -> float:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "privtrain.ledger", "show", "--path", str(path)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        check=True,
    )
    dt = time.perf_counter() - t
    assert "digits" in out.stdout
    return dt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--dir", default=None)
    args = p.parse_args()
    d = Path(args.dir or tempfile.mkdtemp())
    fp = "be" * 32

    t = time.perf_counter()
    sigma = calibrate(1.0)
    print(f"noise for ε=1 at δ={DELTA:g}, q={Q:.4f}, {STEPS} steps: σ={sigma:.4f} ({time.perf_counter() - t:.1f}s)")

    # 1) a 10-run sweep at ε=1 each
    led = ledger.open(d / "sweep.db")
    for i in range(10):
        with charging(led, charge(i, sigma, fp, "digits", 1.0)) as run:
            run.commit(run.charge.events)
    (s,) = led.datasets()
    print(
        f"10-run sweep at ε=1 each: tight PLD ε={s.spent:.3f}, RDP ε={s.spent_rdp:.3f}, naive sum ε={s.naive_sum:.3f}"
    )

    # 2) 1,000 runs on one dataset (tracked while we fill it, then a budget)
    path = d / "big.db"
    led = ledger.open(path)
    led.warm_cache = False  # filling a 1,000-run ledger fast; `show` below measures the cold case first
    t = time.perf_counter()
    for i in range(args.runs):
        with charging(led, charge(i, sigma, fp, "digits", 1.0)) as run:
            run.commit(run.charge.events)
    print(f"charged {args.runs} runs (no budget: no composition needed) in {time.perf_counter() - t:.1f}s")
    led.set_budget(fp, "example", 200.0, DELTA)
    led.close()
    cold = timed_show(path)
    warm = [timed_show(path) for _ in range(3)]
    print(
        f"`ledger show`, {args.runs} runs: first (composes, fills cache) {cold:.2f}s; "
        f"cached {min(warm):.2f}-{max(warm):.2f}s (whole process)"
    )

    led = ledger.open(path)
    new = charge(args.runs, sigma * 1.1, fp, "digits", 0.9)  # a run not seen before: nothing cached
    t = time.perf_counter()
    plan = plan_of(led, new)
    cold_plan = time.perf_counter() - t
    t = time.perf_counter()
    plan_of(led, new)
    warm_plan = time.perf_counter() - t
    print(
        f"pre-flight (plan) over {args.runs} runs: new event {cold_plan:.2f}s, repeated {warm_plan:.3f}s "
        f"(in-process, dp-accounting imported); spent ε={plan.spent:.3f}, after ε={plan.after:.3f}, "
        f"fits={plan.fits}"
    )
    same = charge(args.runs + 1, sigma, fp, "digits", 1.0)  # one more identical sweep trial
    t = time.perf_counter()
    plan_of(led, same)
    print(f"pre-flight for one more identical trial: {time.perf_counter() - t:.2f}s")


if __name__ == "__main__":
    main()
