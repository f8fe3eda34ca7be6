"""Time the compliance gates add to one `privtrain run dp_sgd`: policy, PII scan, SBOM.

    python gates_overhead.py                 # 5 runs, medians
    python gates_overhead.py --repeats 9

Each run is a fresh process (`privtrain run dp_sgd recipe.progress=false privacy.target_epsilon=1`) in one
temporary project that has a policy (.privtrain/policy.yaml, one rule on digits) and a warm SBOM cache
(the first, uncounted run fills it; benchmarks/sbom_overhead.py measures the cold case). Inside the
process each gate's calls are timed:

- policy: find, load and check the config (``api._policy_preflight``), check every charge
  (``policy.check_charges``), chain the policy entry when it is new (``Ledger.record_policy``);
- PII scan: ``data.pii_gate.check`` on the table's features and target;
- SBOM: read the cached SBOM (``sbom.environment_bom``) and write sbom.cdx.json, licences.md/.csv.

The whole run is the process's wall time, measured outside. Writes out/gates_overhead/{runs.csv, gates.md}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
from common import WRAP, machine, out_dir, run_timed_child, temp_project

POLICY = """version: 1
rules:
  - name: digits-limits
    when: {sources: [digits]}
    max_epsilon_per_run: 2
    max_epsilon_total: 1000   # large: the repeated runs never exhaust it
    require_pii_scan: true
"""

TIMED_RUN = (
    WRAP
    + """
import privtrain.api as api
import privtrain.policy as policy
from privtrain.artifacts import sbom
from privtrain.data import pii_gate
from privtrain.ledger.api import Ledger
wrap(api, "_policy_preflight", "policy")
wrap(policy, "check_charges", "policy")
wrap(Ledger, "record_policy", "policy")
wrap(pii_gate, "check", "PII scan")
wrap(sbom, "environment_bom", "SBOM")
wrap(sbom.EnvironmentBom, "write", "SBOM")
import privtrain.cli as cli
code = cli.main(["run", "dp_sgd", "recipe.progress=false", "privacy.target_epsilon=1"])
for gate in ("policy", "PII scan", "SBOM"):
    print(f"GATE\\t{gate}\\t{sum(s for g, s in marks if g == gate):.4f}", flush=True)
sys.exit(code)
"""
)
GATES = ("policy", "PII scan", "SBOM")


def _run(project: Path, cache: Path) -> dict:
    stdout, whole = run_timed_child(TIMED_RUN, project, cache)
    gates = {
        line.split("\t")[1]: float(line.split("\t")[2]) for line in stdout.splitlines() if line.startswith("GATE\t")
    }
    return {"run_seconds": whole, **gates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = out_dir("gates_overhead")
    with temp_project() as project:
        (project / ".privtrain" / "policy.yaml").write_text(POLICY)
        cache = project / "cache"
        _run(project, cache)  # fills the SBOM cache and the file cache; records the policy (not counted)
        frame = pd.DataFrame([{"repeat": i, **_run(project, cache)} for i in range(args.repeats)])
    frame["all gates"] = frame[list(GATES)].sum(axis=1)
    frame.to_csv(out / "runs.csv", index=False)
    run = statistics.median(frame.run_seconds)
    md = [
        "# Time the compliance gates add to `privtrain run dp_sgd`\n",
        f"Machine: {machine()}\n",
        f"Command: `python benchmarks/gates_overhead.py --repeats {args.repeats}` (policy in force, SBOM cache "
        f"warm; median of {args.repeats} whole-process runs, whole run {run:.2f} s)\n",
        "| gate | median s | share of the run |",
        "|---|---:|---:|",
    ]
    for gate in (*GATES, "all gates"):
        s = statistics.median(frame[gate])
        md.append(f"| {gate} | {s:.3f} | {s / run:.1%} |")
    md.append(
        "\nWith a cold SBOM cache (a new environment) the SBOM step is about 0.8 s more: "
        "benchmarks/results/sbom_overhead/.\n"
    )
    (out / "gates.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
