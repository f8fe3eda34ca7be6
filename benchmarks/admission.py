"""Admission: how much stricter the RDP filter is than PLD, and how long an admission check takes.

1. Runs that fit: identical dp_sgd runs on digits at ε = 1 (the recipe's own plan: 360 steps at batch
   128, PRV-calibrated noise), against budgets ε = 4, 8, 16 at δ = 1e-5: how many the admission filter
   admits (through the real ledger), against how many the "natural" PLD filter would (composed PLD
   ε ≤ budget; not valid for adaptively chosen runs, shown for scale).
2. Admission time: `plan` and a full `charging` (reserve + commit) with 1,000 prior runs on one source,
   for runs that all share one setting and for runs that all differ (noise, steps).

    python admission.py [--prior 1000]

Writes out/admission/{fit.csv,timing.csv,README.md}; ratios and counts are machine-independent,
times are this machine's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import machine, out_dir

from privtrain import ledger
from privtrain.errors import BudgetExceeded
from privtrain.ledger.admission import admitted as admit_charges
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.events import dp_sgd_event, epsilon_pld

DELTA = 1e-5
N_TRAIN, BATCH, EPOCHS = 1437, 128, 30  # digits' training split, the recipe's defaults (360 steps)


def digits_run(target: float):
    plan = dp_plan.plan(
        n_train=N_TRAIN,
        batch_size=BATCH,
        epochs=EPOCHS,
        target_epsilon=target,
        noise_multiplier=None,
        delta=DELTA,
        max_grad_norm=0.5,
        accountant="prv",
    )
    return plan.events, plan.epsilon


def charge(i: int, events, eps: float) -> ledger.Charge:
    return ledger.Charge(
        run_id=f"r{i}",
        recipe="dp_sgd",
        source="digits",
        source_name="digits",
        unit="example",
        events=tuple(events),
        delta=DELTA,
        epsilon=eps,
    )


def runs_that_fit(budget: float, events, eps: float) -> dict:
    book = ledger.open(Path(tempfile.mkdtemp()) / "ledger.db")
    book.warm_cache = False
    book.set_budget("digits", "example", budget, DELTA)
    admitted = 0
    while True:
        try:
            with admit_charges(book.core, [charge(admitted, events, eps)]) as run:
                run.commit(events)
        except BudgetExceeded:
            break
        admitted += 1
    pld = 0
    while epsilon_pld(list(events) * (pld + 1), DELTA) <= budget:
        pld += 1
    return {
        "budget ε": budget,
        "run ε (PRV)": round(eps, 3),
        "admitted by the RDP filter": admitted,
        "admitted by PLD (natural filter, not valid adaptively)": pld,
        "PLD ε of the admitted runs": round(book.spent("digits"), 3),
        "filter ε of the admitted runs": round(book.filter_epsilon("digits"), 3),
    }


def admission_time(prior: int, varied: bool) -> dict:
    book = ledger.open(Path(tempfile.mkdtemp()) / "ledger.db")
    book.warm_cache = False
    book.set_budget("digits", "example", 1e6, DELTA)
    started = time.perf_counter()
    for i in range(prior):
        sigma, steps = (4.0 + 0.01 * i, 300 + i) if varied else (4.0, 300)
        events = (dp_sgd_event(sample_rate=0.05, noise_multiplier=sigma, steps=steps),)
        with admit_charges(book.core, [charge(i, events, 1.0)]) as run:
            run.commit(events)
    fill = time.perf_counter() - started
    new = (dp_sgd_event(sample_rate=0.05, noise_multiplier=3.3, steps=123),)
    plans, reserves = [], []
    for k in range(5):
        t = time.perf_counter()
        assert book.plan(charge(prior + k, new, 1.0)).fits
        plans.append(time.perf_counter() - t)
        t = time.perf_counter()
        with admit_charges(book.core, [charge(prior + 100 + k, new, 1.0)]) as run:
            run.commit(new)
        reserves.append(time.perf_counter() - t)
    return {
        "prior runs": prior,
        "settings": "all different" if varied else "all the same",
        "plan (median s)": round(statistics.median(plans), 4),
        "reserve + commit (median s)": round(statistics.median(reserves), 4),
        "filling the ledger (s per run)": round(fill / prior, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=int, default=1000)
    args = parser.parse_args()
    out = out_dir("admission")
    events, eps = digits_run(1.0)
    fit = pd.DataFrame([runs_that_fit(b, events, eps) for b in (4.0, 8.0, 16.0)])
    timing = pd.DataFrame([admission_time(args.prior, varied) for varied in (False, True)])
    fit.to_csv(out / "fit.csv", index=False)
    timing.to_csv(out / "timing.csv", index=False)
    text = "\n".join(
        [
            "# Admission: RDP filter vs PLD, and the time of an admission check",
            "",
            f"Machine: {machine()}. Command: `python benchmarks/admission.py --prior {args.prior}`.",
            "",
            "## ε = 1 dp_sgd runs on digits (360 steps, batch 128, δ = 1e-5) that fit a budget",
            "",
            fit.to_markdown(index=False),
            "",
            "## Admission time with prior runs on one source",
            "",
            timing.to_markdown(index=False),
            "",
        ]
    )
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
