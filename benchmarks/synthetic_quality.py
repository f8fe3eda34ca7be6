"""Quality, DCR protection and utility of the synthesizers: the table in docs/synthetic.md.

    python benchmarks/synthetic_quality.py                         # breast_cancer + wine, seeds 0 1 2
    python benchmarks/synthetic_quality.py --datasets wine --seeds 0 --ctgan-epochs 50

Each cell runs `privtrain run synthetic` through the Python API with its own throw-away ledger
(so no run is refused for budget) and reads metrics.json. TRTR (train on real, same classifier,
same held-out split) is the same for every synthesizer of a dataset and seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import privtrain


def configs(ctgan_epochs: int):
    return [
        ("GaussianCopula", ["synth=gaussian_copula"]),
        (f"CTGAN ({ctgan_epochs} epochs)", ["synth=ctgan", f"synth.epochs={ctgan_epochs}"]),
        *[(f"DP copula ε={e:g}", ["synth=dp_gaussian_copula", f"synth.epsilon={e}"]) for e in (1, 3, 8)],
    ]


def one(dataset: str, seed: int, overrides: list[str], root: Path) -> dict:
    out = root / f"{dataset}-{seed}-{abs(hash(tuple(overrides)))}"
    start = time.perf_counter()
    privtrain.run(
        "synthetic", [f"dataset={dataset}", f"seed={seed}", f"ledger.path={out}.db", *overrides], output_dir=out
    )
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    return {
        "quality": m["quality"]["quality_score"],
        "dcr": m["privacy"]["dcr_baseline_protection"],
        "overfit": m["privacy"]["dcr_overfitting_protection"],
        "tstr": m["utility"]["tstr_accuracy"],
        "trtr": m["utility"]["trtr_accuracy"],
        "seconds": time.perf_counter() - start,
    }


def _ms(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["breast_cancer", "wine"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ctgan-epochs", type=int, default=100)
    args = parser.parse_args()
    print(
        "| dataset | synthesizer | quality | DCR baseline protection | DCR overfitting protection | TSTR acc. | "
        "TRTR acc. | s/run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            for label, overrides in configs(args.ctgan_epochs):
                rows = [one(dataset, seed, overrides, Path(tmp)) for seed in args.seeds]
                col = {k: [r[k] for r in rows] for k in rows[0]}
                print(
                    f"| {dataset} | {label} | {_ms(col['quality'])} | {_ms(col['dcr'])} | {_ms(col['overfit'])} | "
                    f"{_ms(col['tstr'])} | {_ms(col['trtr'])} | {statistics.mean(col['seconds']):.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
