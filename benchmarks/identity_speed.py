"""Admission latency with identity matching, at 10,000 ledger entries: before (another checkout, e.g. main)
and after (this one), side by side on the same machine.

Each code version runs in its own process (``PYTHONPATH`` = its checkout) on a fresh SQLite ledger of
10,000 entries (bulk-loaded as benchmarks/ledger_speed.py does) with ``--sources`` registered tables of
3,000 generated patients each (tests/ledger_helpers/patients.py). A new run's table is then admitted:

- ``match``: ``Ledger.charges(request)``: the table is read, compared with every registered table and the
  built-ins (and, after, the comparison is recorded), and its charges built;
- ``admit``: ``charging()`` up to the reservation on the same handle (chain tail checked, filter planned under
  the write lock, its rows registered, reservation appended);
- ``total``: both: what a run waits for before it may read its rows.

Tables admitted: ``subset`` (a random half of source 0: linked by both versions), ``standardised`` (source 0
with its numbers standardised: linked after only) and ``new`` (other people: linked by neither, registered).

    python benchmarks/identity_speed.py --before /work/main [--sources 10] [--repeat 3] [--rounds 2]

Writes out/identity_speed/{speed.csv,README.md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from common import machine, out_dir, report

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0

WORKER = r"""
import json, sys, time
sys.path.insert(0, {bench!r}); sys.path.insert(0, {tests!r})
import ledger_speed
from ledger_helpers.patients import patients, standardised
from privtrain import ledger
from privtrain.data.fingerprint import canonicalize
from privtrain.privacy import events as ev
from privtrain.sources import Source

location, n_sources, repeat = {location!r}, {sources}, {repeat}
ledger_speed.build(location, 10_000, "similar")
book = ledger.open(location)
for i in range(n_sources):
    frame, fp = canonicalize(patients(3000, seed=100 + i))
    book.register_table(Source(f"clinic{{i}}", f"clinic{{i}}", "declared"), fp, frame)
base = canonicalize(patients(3000, seed=100))[0]
tables = {{"subset": base.sample(frac=0.5, random_state=1), "standardised": standardised(base),
          "new": patients(3000, seed=999)}}
out = []
for name, table in tables.items():
    for k in range(repeat):
        frame, fp = canonicalize(table.sample(frac=1.0, random_state=k) if name != "new" else patients(3000, seed=900 + k))
        book = ledger.open(location)
        mechanisms = (ledger.Mechanism("example", (ev.dp_sgd_event(sample_rate=0.02, noise_multiplier=1.5,
                                                                   steps=100),), 1e-5, 1.0),)
        if hasattr(ledger, "Access"):  # the one door (request built once; charges, policy, reserve)
            from privtrain.ledger.admission import admitted
            access = ledger.Access(Source(fp, name, "content"), fp, mechanisms, table=frame)
            request = ledger.RunRequest.of("dp_sgd", access, config_hash="c", ledger=ledger.LedgerSettings())
            reserve = lambda charges: admitted(book.core, charges)
        else:  # before it
            request = ledger.RunRequest(run_id=f"bench-{{name}}-{{k}}", recipe="dp_sgd", config_hash="c",
                                        source=Source(fp, name, "content"), fingerprint=fp, mechanisms=mechanisms,
                                        table=frame)
            reserve = lambda charges: book.charging(*charges)
        started = time.perf_counter()
        charges = book.charges(request)
        match = time.perf_counter() - started
        started = time.perf_counter()
        with reserve(charges) as run:
            admit = time.perf_counter() - started
            run.commit(charges[0].events)
        out.append({{"table": name, "match": match, "admit": admit, "linked": charges[0].link is not None,
                     "charged": charges[0].source_name}})
print("RESULT " + json.dumps(out))
"""


def run_version(label: str, checkout: Path, sources: int, repeat: int) -> list[dict]:
    location = Path(tempfile.mkdtemp(prefix="identity-speed-")) / "ledger.db"
    source = WORKER.format(
        bench=str(ROOT / "benchmarks"),
        tests=str(ROOT / "tests"),
        location=str(location),
        sources=sources,
        repeat=repeat,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "PRIVTRAIN_ROW_KEY": "ab" * 32,
        "XDG_DATA_HOME": str(location.parent / "data"),
    }
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, cwd=location.parent)
    if done.returncode != 0:
        raise SystemExit(f"{label} ({checkout}) failed:\n{done.stderr[-3000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return [{"code": label, **r} for r in json.loads(line[len("RESULT ") :])]


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the checkout to compare with (e.g. /work/main)")
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="admissions per table and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds alternating the versions (load drifts)")
    args = parser.parse_args(argv)
    rows = []
    versions = ([("before", args.before)] if args.before else []) + [("after", ROOT)]
    for _ in range(args.rounds):
        for label, checkout in versions:
            rows += run_version(label, checkout.resolve(), args.sources, args.repeat)
    raw = pd.DataFrame(rows)
    raw["total"] = raw["match"] + raw["admit"]
    table = (
        raw.groupby(["code", "table"], sort=False)
        .agg(
            match=("match", "median"),
            admit=("admit", "median"),
            total=("total", "median"),
            linked=("linked", "all"),
            charged=("charged", "first"),
        )
        .reset_index()
    )
    out = out_dir("identity_speed")
    raw.to_csv(out / "speed.csv", index=False)
    shown = table.round(3).to_markdown(index=False)
    worst = float(table.loc[table.code == "after", "total"].max())
    text = (
        f"# Admission latency with identity matching, 10,000 entries, {args.sources} registered tables\n\n"
        f"Machine: {machine()}. Command: `python benchmarks/identity_speed.py"
        f"{' --before ' + str(args.before) if args.before else ''} --sources {args.sources} --repeat {args.repeat} "
        f"--rounds {args.rounds}`. Seconds, median of {args.repeat * args.rounds} (rounds alternate the versions), "
        f"SQLite.\n\n{shown}\n\n"
        f"Target: an admission (match + admit) under {TARGET_S:g} s; after: at most {worst:.3f} s.\n"
    )
    return report(out, text)


if __name__ == "__main__":
    main()
