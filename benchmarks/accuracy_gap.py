"""Why is privtrain's dp_sgd behind plain Opacus? One difference at a time, on VALIDATION splits only.

    python benchmarks/accuracy_gap.py --dataset breast_cancer --eps 1 3 --seeds 100 101 102 103 104 105 106 107 108 109

Each row changes privtrain's shipped dp_sgd settings by Hydra overrides (one difference from the plain
Opacus tutorial recipe at a time, then all of them), and the last row is plain Opacus itself
(``common.plain_opacus``). Every row is trained on 80 % of the dataset's training split (privtrain's
keyed split, seed s) and scored on the other 20 %, exactly as ``tune_validation.py`` does: the test
split is never read. DP noise draws from the OS's entropy, so each cell is a mean over seeds and
fresh noise; the ± is the standard error of that mean. Prints one Markdown table: validation accuracy
and validation cross-entropy per row and ε.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import plain_opacus_model
from tune_validation import validation_scores

PLAIN = "plain Opacus (tutorial)"
# (label, overrides of the shipped dp_sgd config): each moves one thing toward the plain Opacus recipe.
VARIANTS: list[tuple[str, tuple[str, ...]]] = [
    ("privtrain defaults", ()),
    ("model=mlp (tanh 128)", ("model=mlp",)),
    ("model=mlp relu", ("model=mlp", "model.activation=relu")),
    ("max_grad_norm=1.0", ("privacy.max_grad_norm=1.0",)),
    ("steps=120 (30 epochs)", ("recipe.steps=120",)),
    ("ema=0", ("recipe.ema=0",)),
    ("grad_sample_mode=hooks", ("recipe.grad_sample_mode=hooks",)),
    ("sgd lr=1.0", ("recipe.optimizer=sgd", "recipe.lr=1.0")),
    (
        "all of the above",
        (
            "model=mlp",
            "model.activation=relu",
            "privacy.max_grad_norm=1.0",
            "recipe.steps=120",
            "recipe.ema=0",
            "recipe.grad_sample_mode=hooks",
            "recipe.optimizer=sgd",
            "recipe.lr=1.0",
        ),
    ),
]


def plain_on_validation(dataset: str, eps: float, seed: int) -> dict:
    """Plain Opacus trained on the same 80 % and scored on the same 20 % as :func:`tune_validation.score`."""
    from sklearn.model_selection import train_test_split

    from privtrain import data, training

    splits = data.split(data.load(data.DatasetSpec(dataset)), seed=seed, test_size=0.2)  # test split unused below
    x_tr, x_va, y_tr, y_va = train_test_split(
        splits.x_train, splits.y_train, test_size=0.2, stratify=splits.y_train, random_state=seed
    )
    model = plain_opacus_model(data.Splits(x_tr, y_tr, x_va, y_va, splits.classes), eps, seed)
    return training.evaluate(model, x_va, y_va, len(splits.classes))


def cell(values: list[float]) -> str:
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sem:.3f}"


def cells(results: list[dict]) -> str:
    """Accuracy, and the validation cross-entropy (a less coarse signal than accuracy on ~90 rows)."""
    return f"{cell([r['accuracy'] for r in results])} | {cell([r['loss'] for r in results])}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breast_cancer")
    parser.add_argument("--eps", nargs="+", type=float, default=[1.0, 3.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(100, 110)))
    parser.add_argument("--only", nargs="*", default=None, help="labels of the rows to run (default: all)")
    parser.add_argument(
        "--extra",
        nargs="*",
        default=[],
        help='more rows, "label:override override", e.g. "C 1, lr .02:privacy.max_grad_norm=1 recipe.lr=0.02"',
    )
    parser.add_argument("--no-plain", action="store_true", help="skip the plain Opacus row")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = [v for v in VARIANTS if args.only is None or v[0] in args.only]
    rows += [(e.split(":", 1)[0], tuple(e.split(":", 1)[1].split())) for e in args.extra]
    start = time.perf_counter()
    print(f"validation accuracy on {args.dataset}, seeds {args.seeds} (mean ± s.e.; the test split is not read)\n")
    print("| setting | " + " | ".join(f"ε={e:g} accuracy | ε={e:g} loss" for e in args.eps) + " |")
    print("|---|" + "---|---|" * len(args.eps), flush=True)
    for label, overrides in [*rows, *([] if args.no_plain else [(PLAIN, None)])]:
        row = []
        for eps in args.eps:
            if overrides is None:
                results = [plain_on_validation(args.dataset, eps, s) for s in args.seeds]
            else:
                results = [validation_scores(args.dataset, overrides, eps, s) for s in args.seeds]
            row.append(cells(results))
        print(f"| {label} | " + " | ".join(row) + " |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
