"""Ledger speed on SQLite and PostgreSQL: `ledger show`, an admission check and `ledger verify` at 1,000,
10,000 and 100,000 entries, for runs that all share one setting and runs that all differ.

Each ledger is bulk-loaded through the backend (real chained entries, hashes and RDP curves, written in one
transaction: not through full runs), with one budget on `digits` and reserve + commit pairs:

- similar: every run is the same DP-SGD (q = 0.01, σ = 2, 100 steps); its stored PLD total is composed by
  the ledger's own code (one self-composition);
- different: every run is a Gaussian mechanism with its own σ; its stored total is the Gaussian of
  σ = (Σσ⁻²)^-½, which is exactly their composition (composing 50,000 distinct PLDs one by one would take
  hours, and a ledger in use composes each run once, at its commit).

Measured (median of --repeat, seconds):

- `show`: `python -m privtrain.ledger show` as a whole process (start-up and imports included);
- `plan`: `Ledger.plan()` of a new DP-SGD run on a fresh handle (reads every charge of the key);
- `admit`: `charging()` up to the reservation on a fresh handle: the whole chain walked once, the plan
  under the write lock, the reservation appended;
- `admit again`: the same on the long-lived handle (only the new tail is read and verified);
- `compose`: the commit after it, which composes the new run onto the stored total (outside the lock);
- `verify`: `python -m privtrain.ledger verify` as a whole process (the full chain; SQLite's integrity_check);
- at 1,000 entries also `show (cold)`: no stored total, everything composed from scratch.

    python benchmarks/ledger_speed.py [--sizes 1000 10000 100000] [--backends sqlite postgresql] [--repeat 3]

PostgreSQL is started by the script (tests/ledger_helpers/pg.py: the pgserver wheel of the test extra, with
PostgreSQL's default durability). Writes out/ledger_speed/{speed.csv,README.md}.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import machine, out_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from ledger_helpers import charging, env  # noqa: E402
from ledger_helpers.pg import Server  # noqa: E402

from privtrain import ledger  # noqa: E402
from privtrain.ledger import filter as rdp_filter  # noqa: E402
from privtrain.ledger import store, totals  # noqa: E402
from privtrain.privacy import events as ev  # noqa: E402

DELTA, BUDGET = 1e-5, 1e9
STAMP = dict(
    user="bench",
    version="0.1.0",
    git_commit=None,
    recipe="dp_sgd",
    source="digits",
    source_name="digits",
    unit="example",
    scope="",
    artifacts="{}",
)


def _events(kind: str, i: int) -> str:
    import dp_accounting

    if kind == "similar":
        return ev.dumps([ev.dp_sgd_event(sample_rate=0.01, noise_multiplier=2.0, steps=100)])
    return ev.dumps([dp_accounting.GaussianDpEvent(40.0 + 0.001 * i)])


def _curve(kind: str, text: str, i: int) -> str:
    import json

    if kind == "similar":
        curve = rdp_filter.rdp_curve(text)
    else:  # closed form of the Gaussian's RDP (α/2σ²), what the filter computes for it
        sigma = 40.0 + 0.001 * i
        curve = [a / (2 * sigma**2) for a in rdp_filter.ORDERS]
    return json.dumps(list(curve))


def build(location, n_entries: int, kind: str) -> float:
    """A ledger of ``n_entries`` entries (a budget and reserve/commit pairs) and its stored PLD total."""
    import json

    started = time.perf_counter()
    book = ledger.open(location)
    book.set_budget("digits", "example", BUDGET, DELTA)
    fields, now = [], "2026-11-26T00:00:00+00:00"
    for i in range((n_entries - 1) // 2):
        text = _events(kind, i)
        common = dict(
            STAMP,
            run_id=f"r{i}",
            config_hash=f"c{i}",
            events=text,
            rdp=_curve(kind, text, i),
            epsilon=1.0,
            delta=DELTA,
            time=now,
        )
        reserved = 2 + 2 * i
        fields.append(dict(common, status="reserved", detail=json.dumps({"process": {"host": "bench", "pid": 1}})))
        fields.append(dict(common, status="committed", ref=reserved, detail="{}"))
    with book._backend.write():
        store.append_many(book._backend, fields)
    book._anchor()
    fresh = ledger.open(location)
    runs = fresh._runs("digits", "example", "")
    state = fresh._state("digits", "example", "")
    if kind == "similar":
        pld = totals.compose_onto(None, runs)
    else:
        import dp_accounting

        sigma = sum((40.0 + 0.001 * i) ** -2 for i in range(len(runs))) ** -0.5
        pld = dp_accounting.pld.privacy_loss_distribution.from_gaussian_mechanism(sigma)
    eps = float(pld.get_epsilon_for_delta(DELTA))
    fresh._backend.put_total(
        "digits",
        "example",
        "",
        totals.PLD_DISCRETIZATION,
        state.last_id,
        len(runs),
        totals.covered_digest(runs),
        json.dumps({repr(DELTA): eps}),
        totals.dumps(pld),
        totals.KEEP,
    )
    assert fresh.head()[0] == 1 + len(fields)
    return time.perf_counter() - started


def _cli(location, *args) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "privtrain.ledger", *args, "--path", str(location)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"ledger {args[0]} failed: {out.stderr or out.stdout}")
    return elapsed


def _charge(i: int) -> ledger.Charge:
    events = (ev.dp_sgd_event(sample_rate=0.02, noise_multiplier=1.5 + 0.01 * i, steps=120),)
    return ledger.Charge(
        run_id=f"new-{i}",
        recipe="dp_sgd",
        source="digits",
        source_name="digits",
        unit="example",
        events=events,
        delta=DELTA,
        epsilon=1.0,
    )


def measure(location, n_entries: int, kind: str, repeat: int, backend: str) -> dict:
    built = build(location, n_entries, kind)
    row = {"backend": backend, "entries": n_entries, "runs": kind, "build (s)": round(built, 1)}
    row["show"] = statistics.median(_cli(location, "show") for _ in range(repeat))
    plans, admits, again, composes = [], [], [], []
    for k in range(repeat):
        book = ledger.open(location)
        started = time.perf_counter()
        assert book.plan(_charge(2 * k)).fits
        plans.append(time.perf_counter() - started)
        book = ledger.open(location)
        for target, i in ((admits, 2 * k), (again, 2 * k + 1)):
            c = _charge(100 + i)
            started = time.perf_counter()
            with charging(book, c) as run:
                target.append(time.perf_counter() - started)
                started = time.perf_counter()
                run.commit(c.events)
            composes.append(time.perf_counter() - started)
    row.update(
        {
            "plan": statistics.median(plans),
            "admit": statistics.median(admits),
            "admit again": statistics.median(again),
            "compose": statistics.median(composes),
        }
    )
    row["verify"] = statistics.median(_cli(location, "verify") for _ in range(repeat))
    return row


def cold_show(location, kind: str) -> float:
    """`show` at 1,000 entries with no stored total: everything composed from scratch."""
    build(location, 1000, kind)
    book = ledger.open(location)
    book._backend._exec("DELETE FROM pld_totals")
    return _cli(location, "show")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    out = out_dir("ledger_speed")
    server = Server(durable=True).start() if "postgresql" in args.backends else None
    rows, cold = [], []
    try:
        for backend in args.backends:
            for size in args.sizes:
                for kind in ("similar", "different"):
                    location = (
                        server.database()
                        if backend == "postgresql"
                        else Path(tempfile.mkdtemp(prefix="ledger-speed-")) / "ledger.db"
                    )
                    rows.append(measure(location, size, kind, args.repeat, backend))
                    print(rows[-1], flush=True)
                    if server is not None and backend == "postgresql":
                        server.drop(location)
            for kind in ("similar", "different"):
                location = (
                    server.database()
                    if backend == "postgresql"
                    else Path(tempfile.mkdtemp(prefix="ledger-speed-")) / "ledger.db"
                )
                cold.append(
                    {
                        "backend": backend,
                        "runs": kind,
                        "entries": 1000,
                        "show, cold (s)": round(cold_show(location, kind), 2),
                    }
                )
                print(cold[-1], flush=True)
    finally:
        if server is not None:
            server.stop()
    table = pd.DataFrame(rows)
    table.to_csv(out / "speed.csv", index=False)
    shown = table.copy()
    for col in ("show", "plan", "admit", "admit again", "compose", "verify"):
        shown[col] = shown[col].map(lambda x: f"{x:.3f}")
    command = "python benchmarks/ledger_speed.py " + " ".join(sys.argv[1:])
    text = "\n".join(
        [
            "# Ledger speed: SQLite and PostgreSQL",
            "",
            f"Machine: {machine()}. Command: `{command.strip()}`. Seconds, median of {args.repeat}.",
            "",
            "Targets at 10,000 entries: `show` and an admission check under 1 s, `verify` under 2 s.",
            "",
            shown.to_markdown(index=False),
            "",
            "`show` and `verify` are whole processes (`python -m privtrain.ledger …`: start-up and imports included). "
            "`admit` is on a fresh handle (the whole chain walked once), `admit again` on the same handle (the new "
            "tail only); `compose` is the commit that composes the new run onto the stored PLD total, outside the "
            "write lock. `build` is the bulk load, not a measured operation.",
            "",
            "## `show` with no stored total (everything composed from scratch), 1,000 entries",
            "",
            pd.DataFrame(cold).to_markdown(index=False),
            "",
        ]
    )
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
