"""Time encryption at rest adds to one default `privtrain run dp_sgd`: the same run with and without a key.

    python encryption_overhead.py                 # 5 pairs, medians
    python encryption_overhead.py --repeats 9

Each run is a fresh process (`privtrain run dp_sgd recipe.progress=false`, the default digits run) in one
temporary project with a warm SBOM cache (a first, uncounted run fills it). The runs alternate, plain then
sealed, so drift on a shared machine hits both arms alike; each pair gives a ratio, and the table reports the
median of those ratios beside the medians of each arm. Inside the sealed process the sealing itself is timed
(``privtrain.crypto.aead.seal``: the checkpoint's AES-256-GCM) and the key file's reading
(``privtrain.crypto.keys.resolve``), so the share is visible even when the whole-run noise hides it.

Writes out/encryption_overhead/{runs.csv, README.md}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
from common import WRAP, machine, out_dir, report, run_timed_child, temp_project

TIMED_RUN = (
    WRAP
    + """
import privtrain.crypto.aead as aead
import privtrain.crypto.keys as keys
wrap(aead, "seal", "seal")
wrap(keys, "resolve", "key")
import privtrain.cli as cli
code = cli.main(["run", "dp_sgd", "recipe.progress=false", *sys.argv[1:]])
for part in ("seal", "key"):
    print(f"PART\\t{part}\\t{sum(s for g, s in marks if g == part):.5f}", flush=True)
sys.exit(code)
"""
)


def _run(project: Path, cache: Path, key_file: Path | None) -> dict:
    source = TIMED_RUN.replace("*sys.argv[1:]", f"'artifacts.key_file={key_file}'" if key_file else "")
    stdout, whole = run_timed_child(source, project, cache)
    parts = {
        line.split("\t")[1]: float(line.split("\t")[2]) for line in stdout.splitlines() if line.startswith("PART\t")
    }
    return {"run_seconds": whole, "seal_seconds": parts.get("seal", 0.0), "key_seconds": parts.get("key", 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = out_dir("encryption_overhead")
    rows = []
    with temp_project() as project:
        import subprocess
        import sys

        key_file = project / "key.json"
        subprocess.run(
            [sys.executable, "-m", "privtrain.cli", "keys", "new", str(key_file)], check=True, capture_output=True
        )
        cache = project / "cache"
        _run(project, cache, None)  # fills the SBOM cache and the file cache (not counted)
        for i in range(args.repeats):
            plain, sealed = _run(project, cache, None), _run(project, cache, key_file)
            rows.append(
                {
                    "repeat": i,
                    "plain_s": plain["run_seconds"],
                    "sealed_s": sealed["run_seconds"],
                    "ratio": sealed["run_seconds"] / plain["run_seconds"],
                    "seal_s": sealed["seal_seconds"],
                    "key_s": sealed["key_seconds"],
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "runs.csv", index=False)
    med = {c: statistics.median(frame[c]) for c in ("plain_s", "sealed_s", "ratio", "seal_s", "key_s")}
    text = "\n".join(
        [
            "# Encryption at rest: overhead on a default `privtrain run dp_sgd`\n",
            f"Machine: {machine()}\n",
            (
                f"Command: `python benchmarks/encryption_overhead.py --repeats {args.repeats}` (default digits run, 360 steps; "
                f"fresh process per run, plain and sealed interleaved, SBOM cache warm; medians of {args.repeats} pairs)\n"
            ),
            "| | median |",
            "|---|---:|",
            f"| whole run, no key (s) | {med['plain_s']:.2f} |",
            f"| whole run, with a key (s) | {med['sealed_s']:.2f} |",
            f"| ratio with/without (median of pairs) | {med['ratio']:.3f} |",
            f"| sealing the checkpoint, AES-256-GCM, with importing `cryptography` (s) | {med['seal_s']:.4f} |",
            f"| reading the key file (s) | {med['key_s']:.4f} |",
            f"| sealing + key as a share of the sealed run | {(med['seal_s'] + med['key_s']) / med['sealed_s']:.3%} |",
            "",
            "Per-pair ratios: " + ", ".join(f"{r:.3f}" for r in frame.ratio) + ".",
            (
                "The whole-run ratio carries the shared machine's run-to-run noise; the timed sealing is the cost the key "
                "itself adds (plus the synthetic rows' or predictions' sealing in those commands, of the same order per MB)."
            ),
            "",
        ]
    )
    report(out, text)


if __name__ == "__main__":
    main()
