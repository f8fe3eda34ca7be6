"""Choose dp_sgd training settings on a validation split, never on the test split.

    python benchmarks/tune_validation.py --dataset breast_cancer --epsilons 1 3 inf \
        --grid "recipe.steps=90,180,360" "recipe.lr=0.05,0.1"

The dataset's training split (the one every recipe and benchmark uses, seed s) is split
again: 80 % to train, 20 % to validate. Each setting of the grid (Hydra overrides of the
shipped dp_sgd config) is trained on the first part with privtrain's own DP-SGD code path
and scored on the second, at every ε, over the
validation seeds (default 100, 101: disjoint from the benchmarks' seeds 0-2). The test
split is never read. Prints one Markdown table: mean validation accuracy per setting and ε.
"""

from __future__ import annotations

import argparse
import itertools
import math


def score(dataset: str, overrides: tuple[str, ...], eps: float, seed: int) -> float:
    """Validation accuracy of the dp_sgd recipe's settings with ``overrides`` at one ε (inf: non-private)."""
    return validation_scores(dataset, overrides, eps, seed)["accuracy"]


def validation_scores(dataset: str, overrides: tuple[str, ...], eps: float, seed: int) -> dict:
    """Every validation score (:func:`privtrain.training.evaluate`: accuracy, balanced accuracy, AUC, loss, ...)
    of the dp_sgd recipe's settings with ``overrides`` at one ε (inf: non-private)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from privtrain import config, data, models, training
    from privtrain.privacy import dp_sgd

    s = config.settings("dp_sgd", config.compose("dp_sgd", [f"dataset={dataset}", "recipe.progress=false", *overrides]))
    splits = data.split(data.load(s.dataset), seed=seed, test_size=s.dataset.test_size)  # test split unused below
    x_tr, x_va, y_tr, y_va = train_test_split(
        splits.x_train, splits.y_train, test_size=0.2, stratify=splits.y_train, random_state=seed
    )
    n_classes = len(splits.classes)
    model = models.build(s.model, n_inputs=x_tr.shape[1], n_classes=n_classes, image_shape=None)
    settings = s.train.for_rows(len(y_tr))  # recipe.steps resolved for these rows
    plan = None
    if math.isfinite(eps):
        plan = dp_sgd.plan(
            n_train=len(y_tr),
            batch_size=settings.batch_size,
            epochs=settings.epochs,
            target_epsilon=eps,
            noise_multiplier=None,
            delta=s.privacy.delta,
            max_grad_norm=float(s.privacy.max_grad_norm),
            accountant=str(s.privacy.accountant),
        )
    out = training.train(model, x_tr.astype(np.float32), y_tr, settings, dp=plan, seed=seed, report_epsilon=False)
    return training.evaluate(out.model, x_va.astype(np.float32), y_va, n_classes)


def parse_grid(items: list[str]) -> tuple[list[str], list[tuple[str, ...]]]:
    """("key=v1,v2", ...) -> (keys, every combination as Hydra overrides)."""
    keys = [item.split("=", 1)[0] for item in items]
    axes = [[f"{key}={v}" for v in item.split("=", 1)[1].split(",")] for key, item in zip(keys, items)]
    return keys, list(itertools.product(*axes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0, math.inf])
    parser.add_argument("--seeds", nargs="+", type=int, default=[100, 101])
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        help='Hydra overrides with comma-separated values, e.g. "recipe.steps=180,360" "model=logreg,mlp"',
    )
    args = parser.parse_args(argv)
    keys, grid = parse_grid(args.grid)
    print(f"validation accuracy on {args.dataset} (seeds {args.seeds}; the test split is not read)\n")
    head = " | ".join(keys) if keys else "setting"
    print(f"| {head} | " + " | ".join("ε=∞" if math.isinf(e) else f"ε={e:g}" for e in args.epsilons) + " |")
    print("|" + "---|" * (max(1, len(keys)) + len(args.epsilons)))
    for overrides in grid:
        cells = []
        for eps in args.epsilons:
            accs = [score(args.dataset, overrides, eps, s) for s in args.seeds]
            cells.append(f"{sum(accs) / len(accs):.3f}")
        label = " | ".join(o.split("=", 1)[1] for o in overrides) if overrides else "shipped defaults"
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
