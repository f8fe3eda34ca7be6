"""Time `monitor.reference=true` adds to one default `privtrain run dp_sgd` (digits, ε = 1), and what it costs.

    python monitoring_overhead.py                 # 5 interleaved pairs, medians
    python monitoring_overhead.py --repeats 9

Each run is a fresh process (`privtrain run dp_sgd recipe.progress=false privacy.target_epsilon=1`, with or
without `monitor.reference=true`) in one temporary project with a warm SBOM cache (the first, uncounted run
fills it). Runs alternate (off, on, off, ...) so drifting machine load hits both alike. Inside the process the
monitoring calls are timed: planning the release (noise calibration and the PLD composition the ledger charges),
the release itself (histograms of 64 features, labels and predictions, noise, the file), and the fairness hook;
and every PLD composition of the run (``privacy.events.epsilon_pld``: the plan's composed ε, the ledger's
charge and its spend after the run), which monitoring changes by adding one event.
The whole run is the process's wall time, measured outside. Also reported: the ε the ledger charged each way.
Writes out/monitoring_overhead/{runs.csv, README.md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd
from common import WRAP, machine, out_dir, run_timed_child, temp_project

TIMED_RUN = (
    WRAP
    + """
from privtrain.monitoring import run_hooks
wrap(run_hooks, "plan", "monitoring")
wrap(run_hooks, "finish", "monitoring")
from privtrain.privacy import events
wrap(events, "epsilon_pld", "pld")
import privtrain.cli as cli
code = cli.main(["run", "dp_sgd", "recipe.progress=false", "privacy.target_epsilon=1", *sys.argv[1:]])
print(f"GATE\\tmonitoring\\t{sum(s for g, s in marks if g == 'monitoring'):.4f}", flush=True)
print(f"PLD\\t{sum(s for g, s in marks if g == 'pld'):.4f}", flush=True)
from privtrain import ledger
e = [e for e in ledger.open(".privtrain/ledger.db").entries() if e.status == "committed"][-1]
print(f"EPS\\t{e.epsilon:.6f}", flush=True)
sys.exit(code)
"""
)


def _run(project: Path, cache: Path, on: bool) -> dict:
    source = TIMED_RUN.replace("*sys.argv[1:]", '"monitor.reference=true"' if on else "")
    stdout, whole = run_timed_child(source, project, cache)
    values = {
        line.split("\t")[0]: float(line.split("\t")[-1])
        for line in stdout.splitlines()
        if line.startswith(("GATE\t", "EPS\t", "PLD\t"))
    }
    return {
        "monitoring": "on" if on else "off",
        "run_seconds": whole,
        "monitoring_seconds": values["GATE"],
        "pld_seconds": values["PLD"],
        "ledger_epsilon": values["EPS"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = out_dir("monitoring_overhead")
    rows = []
    with temp_project() as project:
        (project / ".privtrain" / "policy.yaml").write_text("version: 1\nrules: []\n")
        cache = project / "cache"
        _run(project, cache, False)  # fills the SBOM cache (not counted)
        for i in range(args.repeats):
            for on in (False, True):
                rows.append({"repeat": i, **_run(project, cache, on)})
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "runs.csv", index=False)
    med = frame.groupby("monitoring").median(numeric_only=True)
    paired = (
        frame[frame.monitoring == "on"].run_seconds.to_numpy() - frame[frame.monitoring == "off"].run_seconds.to_numpy()
    )
    off, on = med.loc["off", "run_seconds"], med.loc["on", "run_seconds"]
    inside = med.loc["on", "monitoring_seconds"]
    md = [
        "# Time `monitor.reference=true` adds to `privtrain run dp_sgd`\n",
        f"Machine: {machine()}\n",
        (
            f"Command: `python benchmarks/monitoring_overhead.py --repeats {args.repeats}` (default run: digits, "
            f"logreg, ε = 1; {args.repeats} interleaved pairs of fresh processes, medians)\n"
        ),
        "| | run s (median) | monitoring calls s | PLD compositions s | ε charged by the ledger |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| monitoring {k} | {med.loc[k, 'run_seconds']:.2f} | {med.loc[k, 'monitoring_seconds']:.3f} | "
            f"{med.loc[k, 'pld_seconds']:.3f} | {med.loc[k, 'ledger_epsilon']:.3f} |"
            for k in ("off", "on")
        ),
        "",
        f"Paired differences on - off (s): {', '.join(f'{d:+.2f}' for d in paired)}; median {statistics.median(paired):+.2f}.",
        (
            f"Ratio on / off (whole process): **{on / off:.3f}**; the monitoring calls themselves: {inside:.3f} s "
            f"({inside / on:.1%} of the run with monitoring on)."
        ),
        (
            "The ε difference is the reference release's privacy cost (monitor.epsilon = 0.5 at the run's δ, composed "
            "with the training by PLD: less than the sum)."
        ),
        "",
    ]
    text = "\n".join(md)
    (out / "README.md").write_text(text)
    print(text)
    sys.exit(0)


if __name__ == "__main__":
    main()
