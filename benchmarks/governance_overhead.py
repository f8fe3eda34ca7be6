"""Time the governance gates add to one default `privtrain run dp_sgd` (digits, ε = 1), all on at once.

    python governance_overhead.py                 # 5 interleaved pairs, medians
    python governance_overhead.py --repeats 9

"off": the default run under a policy with no rules. "on": the same run under a policy whose risk class
requires encryption and monitoring on a source with recorded provenance, with a key file, DP reference
statistics (`monitor.reference=true`), `run.purpose` and `site.region`: every gate of issue 22 that acts at
run time (classification, provenance, purpose, retention and region checks, sealing the checkpoint, the
reference release). Each run is a fresh process in its own temporary project with a warm SBOM cache; runs
alternate (off, on, off, ...) so drifting load hits both alike. Inside the process the gates' calls are timed
(the monitoring hooks, sealing, the consent checks). Writes out/governance_overhead/{runs.csv, README.md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd
from common import WRAP, machine, out_dir, run_timed_child, temp_project

POLICY_ON = """version: 1
rules:
  - {name: health, when: {sources: [digits]}, require_provenance: true}
risk:
  classes:
    high: {when: {sources: [digits]}, controls: {max_epsilon: 3, encryption: true, monitoring: true}}
"""

TIMED_RUN = (
    WRAP
    + """
from privtrain.monitoring import run_hooks
wrap(run_hooks, "plan", "gates")
wrap(run_hooks, "finish", "gates")
from privtrain.artifacts import sealed
wrap(sealed, "save_torch", "gates")
from privtrain.policy import consent
for name in ("check_run", "check_charges"):
    wrap(consent, name, "gates")
import privtrain.cli as cli
code = cli.main(["run", "dp_sgd", "recipe.progress=false", "privacy.target_epsilon=1", *sys.argv[1:]])
print(f"GATE\\t{sum(s for g, s in marks if g == 'gates'):.4f}", flush=True)
sys.exit(code)
"""
)
ON = ['"monitor.reference=true"', '"run.purpose=research"', '"site.region=eu-west"', '"artifacts.key_file=key.json"']


def _setup(project: Path, on: bool) -> None:
    import subprocess

    (project / ".privtrain" / "policy.yaml").write_text(POLICY_ON if on else "version: 1\nrules: []\n")
    if on:
        for args in (
            [
                "ledger",
                "provenance",
                "set",
                "digits",
                "--collected-by",
                "UCI",
                "--basis",
                "public",
                "--purposes",
                "research",
                "--retain-until",
                "2099-01-01",
                "--regions",
                "eu-west",
                "--reason",
                "benchmark",
            ],
            ["keys", "new", "key.json"],
        ):
            subprocess.run(
                [sys.executable, "-m", "privtrain.cli", *args],
                cwd=project,
                check=True,
                capture_output=True,
                env={**__import__("os").environ, "PRIVTRAIN_LEDGER": str(project / ".privtrain" / "ledger.db")},
            )


def _run(project: Path, cache: Path, on: bool) -> dict:
    source = TIMED_RUN.replace("*sys.argv[1:]", ", ".join(ON) if on else "")
    stdout, whole = run_timed_child(source, project, cache)
    gate = next(float(line.split("\t")[-1]) for line in stdout.splitlines() if line.startswith("GATE\t"))
    return {"gates": "on" if on else "off", "run_seconds": whole, "gate_seconds": gate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = out_dir("governance_overhead")
    rows = []
    with temp_project() as off_project, temp_project() as on_project:
        _setup(off_project, False)
        _setup(on_project, True)
        cache = off_project / "cache"
        _run(off_project, cache, False)  # fills the SBOM cache (not counted)
        for i in range(args.repeats):
            for on in (False, True):
                rows.append({"repeat": i, **_run(on_project if on else off_project, cache, on)})
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "runs.csv", index=False)
    med = frame.groupby("gates").median(numeric_only=True)
    on_s = frame[frame.gates == "on"].run_seconds.to_numpy()
    off_s = frame[frame.gates == "off"].run_seconds.to_numpy()
    ratios = on_s / off_s
    inside = med.loc["on", "gate_seconds"]
    md = [
        "# Time the governance gates add to `privtrain run dp_sgd`\n",
        f"Machine: {machine()}\n",
        (
            f"Command: `python benchmarks/governance_overhead.py --repeats {args.repeats}` (digits, logreg, ε = 1; "
            "off: a policy with no rules; on: a high-risk class requiring encryption and monitoring, recorded "
            "provenance, a key, DP reference statistics, purpose and region)\n"
        ),
        "| gates | run s (median) | gate calls s (median) |",
        "|---|---:|---:|",
        *(f"| {k} | {med.loc[k, 'run_seconds']:.2f} | {med.loc[k, 'gate_seconds']:.3f} |" for k in ("off", "on")),
        "",
        f"Paired ratios on / off: {', '.join(f'{r:.3f}' for r in ratios)}; median **{statistics.median(ratios):.3f}**.",
        f"The gates' own calls: {inside:.3f} s, {inside / med.loc['on', 'run_seconds']:.1%} of the run.",
        "",
    ]
    text = "\n".join(md)
    (out / "README.md").write_text(text)
    print(text)
    sys.exit(0)


if __name__ == "__main__":
    main()
