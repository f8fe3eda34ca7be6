"""Multi-process DP-SGD: `privtrain run dp_sgd` under torchrun with 1 and 2 CPU processes (gloo).

    python torchrun_scaling.py                   # 3 runs per process count, medians
    python torchrun_scaling.py --repeats 5 model=mlp recipe.epochs=10

The same global settings every time (logical batch, epochs, ε): under torchrun each process takes its
share of every Poisson batch, so the sampling rate, the steps and ε are those of one process. Measured
per process count: the whole job's wall time, the training loop's time per step (rank 0's, timed around
privtrain.training.train), ε and held-out accuracy. Writes out/torchrun_scaling/{runs.csv, scaling.md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import machine, out_dir

# Run by torchrun in every process: times the training loop, then runs the CLI as `privtrain run` would.
TIMED = """
import functools, json, os, sys, time
from privtrain import training
inner = training.train
@functools.wraps(inner)
def timed(*a, **k):
    t = time.perf_counter()
    out = inner(*a, **k)
    if os.environ.get("RANK", "0") == "0":
        print("TRAIN " + json.dumps({"seconds": time.perf_counter() - t, "steps": out.steps}), flush=True)
    return out
training.train = timed
import privtrain.cli as cli
sys.argv = ["privtrain", *sys.argv[1:]]
cli.main()
"""


def _job(nproc: int, project: Path, run_dir: Path, overrides: list[str]) -> dict:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [
        torchrun,
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(project / "timed.py"),
        "run",
        "dp_sgd",
        "recipe.progress=false",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-1500:]}\n{out.stderr[-2500:]}")
    train = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("TRAIN "))[6:])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "processes": nproc,
        "wall_s": wall,
        "train_s": train["seconds"],
        "steps": train["steps"],
        "step_ms": 1000 * train["seconds"] / train["steps"],
        "epsilon": metrics["guarantee"]["epsilon"],
        "accuracy": metrics["metrics"]["accuracy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("overrides", nargs="*", help="privtrain overrides for every run (e.g. model=mlp)")
    args = ap.parse_args()
    out = out_dir("torchrun_scaling")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / ".privtrain").mkdir()
        (project / "timed.py").write_text(TIMED)
        for i in range(args.repeats):  # interleaved: the machine's drift hits both counts alike
            for nproc in (1, 2):
                rows.append({"repeat": i, **_job(nproc, project, project / f"run-{nproc}-{i}", args.overrides)})
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "runs.csv", index=False)
    med = frame.groupby("processes").median(numeric_only=True)
    command = " ".join(["python benchmarks/torchrun_scaling.py", f"--repeats {args.repeats}", *args.overrides])
    md = [
        "# torchrun scaling: `privtrain run dp_sgd` on 1 and 2 CPU processes (gloo)\n",
        f"Machine: {machine()}\n",
        f"Command: `{command}`\n",
        f"Medians of {args.repeats} runs per count, interleaved:\n",
        "| processes | job wall s | training s | steps | ms / step | ε | accuracy |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in med.iterrows():
        md.append(
            f"| {n} | {r.wall_s:.2f} | {r.train_s:.2f} | {r.steps:.0f} | {r.step_ms:.1f} | {r.epsilon:.3f} | "
            f"{r.accuracy:.3f} |"
        )
    md.append(
        f"\nStep time, 2 processes ÷ 1: **{med.step_ms[2] / med.step_ms[1]:.2f}×**; job wall time: "
        f"{med.wall_s[2] / med.wall_s[1]:.2f}×. ε is the same by construction (global batch, same steps): "
        f"{statistics.median(frame[frame.processes == 1].epsilon):.4f} vs "
        f"{statistics.median(frame[frame.processes == 2].epsilon):.4f}.\n"
    )
    (out / "scaling.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
