"""Whole-process time of `privtrain run dp_sgd` against a plain Opacus script doing the same job.

    python end_to_end.py                 # 5 interleaved pairs, median; then one profiled privtrain run
    python end_to_end.py --repeats 9

Both run as fresh processes (interpreter start and imports included), alternating, in one temporary
project whose ledger grows by one entry per privtrain run, as a user's would. The plain script is
``plain_opacus_digits.py``: same data, model, optimizer, batch, steps, clipping, ε and accountant.
``--profile`` (on by default) times privtrain's phases in one more run: where the difference goes.
Writes out/end_to_end/{end_to_end.csv, end_to_end.md}.
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
from common import WRAP, machine, out_dir

HERE = Path(__file__).resolve().parent
PHASES = (
    WRAP
    + """
import privtrain.cli as cli
from privtrain import api, config, training
from privtrain.artifacts import run_dir
from privtrain.ledger import api as ledger_api
from privtrain.recipes import dp_sgd
wrap(config, "validate_overrides", "check the overrides (compose + typed settings)")
wrap(dp_sgd, "plan", "plan: load, fingerprint, calibrate the noise")
wrap(ledger_api.Ledger, "charges", "ledger: build the charges (row overlap)")
wrap(training, "train", "training loop (Opacus)")
wrap(training, "evaluate", "evaluate")
wrap(dp_sgd, "_write_artifacts", "artifacts (card, checkpoint, record)")
wrap(run_dir, "hash_artifacts", "hash the artifacts")
wrap(api, "execute", "the run protocol, all of it")
sys.argv = ["privtrain", "run", "dp_sgd", "recipe.progress=false"]
try:
    cli.main()
except SystemExit:
    pass
total = time.perf_counter() - t0
print("PHASES")
for label, seconds in marks:
    print(f"{label}\\t{seconds:.3f}")
print(f"whole process after interpreter start\\t{total:.3f}")
"""
)


def _timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    out = out_dir("end_to_end")
    privtrain = [sys.executable, "-m", "privtrain.cli", "run", "dp_sgd", "recipe.progress=false"]  # = `privtrain`
    plain = [sys.executable, str(HERE / "plain_opacus_digits.py")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / ".privtrain").mkdir()
        _timed(privtrain, project)  # warm the file cache for both (not counted)
        _timed([*plain, str(project / "plain")], project)
        for i in range(args.repeats):
            rows.append(
                {
                    "repeat": i,
                    "tool": "plain Opacus script",
                    "seconds": _timed([*plain, str(project / "plain")], project),
                }
            )
            rows.append({"repeat": i, "tool": "privtrain run dp_sgd", "seconds": _timed(privtrain, project)})
        phases = None
        if not args.no_profile:
            prof = subprocess.run([sys.executable, "-c", PHASES], cwd=project, capture_output=True, text=True)
            lines = prof.stdout.split("PHASES\n", 1)[-1].strip().splitlines()
            phases = pd.DataFrame([line.split("\t") for line in lines], columns=["phase", "seconds"])
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "end_to_end.csv", index=False)
    med = frame.groupby("tool")["seconds"].median()
    ratio = med["privtrain run dp_sgd"] / med["plain Opacus script"]
    md = [
        "# End-to-end: `privtrain run dp_sgd` vs a plain Opacus script\n",
        f"Machine: {machine()}\n",
        f"Command: `python benchmarks/end_to_end.py --repeats {args.repeats}`\n",
        f"Median of {args.repeats} interleaved whole-process runs each:\n",
        "| tool | median s | runs (s) |",
        "|---|---:|---|",
    ]
    for tool in ("plain Opacus script", "privtrain run dp_sgd"):
        times = frame[frame.tool == tool].seconds
        md.append(f"| {tool} | {statistics.median(times):.2f} | {', '.join(f'{t:.1f}' for t in times)} |")
    md.append(f"\n**Ratio: {ratio:.2f}×** (privtrain ÷ plain).\n")
    md.append(
        "Both pay Python's start, the imports of torch and Opacus, the noise calibration (PRV, the same "
        "search) and the training loop. privtrain adds Hydra's composition, the fingerprint and keyed row "
        "hashes, the ledger's reservation and its PLD composition, the artifacts, and dp-accounting's "
        "import. It saves the interpreter's teardown of the loaded modules (about 1 s here): once a "
        "command has finished, `privtrain` flushes its output, runs the exit handlers and exits without it "
        "(`privtrain.cli.entry`); the plain script pays it, as any script does.\n"
    )
    if phases is not None:
        md += [
            "Where privtrain's time goes (one profiled run; phases nest: the protocol holds plan, training, "
            "artifacts):\n",
            "| phase | s |",
            "|---|---:|",
        ]
        md += [f"| {p} | {float(s):.2f} |" for p, s in zip(phases.phase, phases.seconds)]
    (out / "end_to_end.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
