"""The SBOM step's share of one `privtrain run dp_sgd`, with the SBOM cache cold and warm.

    python sbom_overhead.py                 # 3 interleaved cold/cached pairs, median
    python sbom_overhead.py --repeats 5

Each run is a fresh process (`privtrain run dp_sgd recipe.progress=false`, the default run) in one
temporary project. The SBOM step is timed inside the process: building or reading the SBOM
(``sbom.environment_bom``, before the charge) plus writing ``sbom.cdx.json``, ``licences.md`` and
``licences.csv`` (``EnvironmentBom.write``); the whole run is the process's wall time measured
outside. "cold" points ``PRIVTRAIN_CACHE`` at an empty folder; "cached" at one that holds this
environment's SBOM. Writes out/sbom_overhead/{sbom_overhead.csv, sbom_overhead.md}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
from common import WRAP, machine, out_dir, run_timed_child, temp_project

TIMED_RUN = (
    WRAP
    + """
from privtrain.artifacts import sbom
wrap(sbom, "environment_bom", "build or read the SBOM")
wrap(sbom.EnvironmentBom, "write", "write the SBOM and licence files")
import privtrain.cli as cli
code = cli.main(["run", "dp_sgd", "recipe.progress=false"])
print(f"SBOM_SECONDS\\t{sum(s for _, s in marks):.4f}", flush=True)
sys.exit(code)
"""
)


def _run(project: Path, cache: Path) -> tuple[float, float]:
    stdout, whole = run_timed_child(TIMED_RUN, project, cache)
    line = next(x for x in stdout.splitlines() if x.startswith("SBOM_SECONDS"))
    return float(line.split("\t")[1]), whole


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = out_dir("sbom_overhead")
    rows = []
    with temp_project() as project:
        warm = project / "cache-warm"
        _run(project, warm)  # fills the warm cache and the file cache (not counted)
        for i in range(args.repeats):
            for mode, cache in (("cold", project / f"cache-cold-{i}"), ("cached", warm)):
                sbom_s, whole = _run(project, cache)
                rows.append(
                    {"repeat": i, "cache": mode, "sbom_seconds": sbom_s, "run_seconds": whole, "ratio": sbom_s / whole}
                )
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "sbom_overhead.csv", index=False)
    md = [
        "# The SBOM step's share of `privtrain run dp_sgd`\n",
        f"Machine: {machine()}\n",
        f"Command: `python benchmarks/sbom_overhead.py --repeats {args.repeats}`\n",
        f"Median of {args.repeats} interleaved whole-process runs each (`privtrain run dp_sgd "
        "recipe.progress=false`):\n",
        "| SBOM cache | SBOM step s | whole run s | SBOM ÷ run | runs (SBOM s / run s) |",
        "|---|---:|---:|---:|---|",
    ]
    for mode in ("cold", "cached"):
        part = frame[frame.cache == mode]
        md.append(
            f"| {mode} | {statistics.median(part.sbom_seconds):.3f} | {statistics.median(part.run_seconds):.2f} "
            f"| {statistics.median(part.ratio):.1%} | "
            + ", ".join(f"{s:.2f}/{w:.1f}" for s, w in zip(part.sbom_seconds, part.run_seconds))
            + " |"
        )
    md.append(
        "\nCold: `cyclonedx-py environment` runs as a subprocess (reproducible JSON, no schema validation) "
        "and the licences are classified. Cached: the environment key (every installed distribution's "
        "name and version) is computed and the cached SBOM read; the licence files are written in both.\n"
    )
    (out / "sbom_overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
