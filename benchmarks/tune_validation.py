"""Choose dp_sgd training settings on a validation split, never on the test split.

    python benchmarks/tune_validation.py --dataset breast_cancer --epsilons 1 3 inf \
        --grid "recipe.steps=90,180,360" "recipe.lr=0.05,0.1"

The dataset's training split (the one every recipe and benchmark uses, seed s) is split
again: 80 % to train, 20 % to validate. Each setting of the grid is trained on the first
part with privtrain's own DP-SGD code path and scored on the second, at every ε, over the
validation seeds (default 100, 101: disjoint from the benchmarks' seeds 0-2). The test
split is never read. Prints one Markdown table: mean validation accuracy per setting and ε.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULTS = {"recipe.steps": 180, "recipe.epochs": 0, "recipe.batch_size": 128, "recipe.lr": 0.05, "recipe.optimizer": "adam",
            "recipe.ema": 0.95, "privacy.max_grad_norm": 0.5, "model.name": "logreg"}


def score(dataset: str, setting: dict, eps: float, seed: int) -> float:
    """Validation accuracy of one setting at one ε (inf: non-private) for one seed."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from privtrain import data, models, training
    from privtrain.privacy import dp_sgd

    splits = data.split(data.load(data.DatasetSpec(dataset)), seed=seed, test_size=0.2)  # test split: unused
    x_tr, x_va, y_tr, y_va = train_test_split(splits.x_train, splits.y_train, test_size=0.2,
                                              stratify=splits.y_train, random_state=seed)
    n_classes = len(splits.classes)
    spec = models.ModelSpec(name=setting["model.name"])
    model = models.build(spec, n_inputs=x_tr.shape[1], n_classes=n_classes, image_shape=None)
    batch = min(int(setting["recipe.batch_size"]), len(y_tr))
    epochs = int(setting["recipe.epochs"]) or math.ceil(int(setting["recipe.steps"]) / math.ceil(len(y_tr) / batch))
    settings = training.TrainSettings(
        epochs=epochs, batch_size=batch, max_physical_batch_size=batch,
        optimizer=setting["recipe.optimizer"], lr=float(setting["recipe.lr"]), ema=float(setting["recipe.ema"]),
        progress=False)
    plan = None
    if math.isfinite(eps):
        plan = dp_sgd.plan(n_train=len(y_tr), batch_size=batch, epochs=settings.epochs, target_epsilon=eps,
                           noise_multiplier=None, delta=None, max_grad_norm=float(setting["privacy.max_grad_norm"]),
                           accountant="prv")
    out = training.train(model, x_tr.astype(np.float32), y_tr, settings, dp=plan, seed=seed, report_epsilon=False)
    return training.evaluate(out.model, x_va.astype(np.float32), y_va, n_classes)["accuracy"]


def parse_grid(items: list[str]) -> list[dict]:
    axes = []
    for item in items:
        key, values = item.split("=", 1)
        if key not in DEFAULTS:
            raise SystemExit(f"--grid {key}: choose among {', '.join(DEFAULTS)}")
        cast = type(DEFAULTS[key])
        axes.append([(key, cast(v)) for v in values.split(",")])
    return [{**DEFAULTS, **dict(combo)} for combo in itertools.product(*axes)] if axes else [dict(DEFAULTS)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0, math.inf])
    parser.add_argument("--seeds", nargs="+", type=int, default=[100, 101])
    parser.add_argument("--grid", nargs="*", default=[],
                        help='e.g. "recipe.steps=90,180" "recipe.lr=0.05,0.1" (recipe.epochs=0: from recipe.steps)')
    args = parser.parse_args(argv)
    grid = parse_grid(args.grid)
    changed = sorted({k for s in grid for k in s if s[k] != DEFAULTS[k]} | {a.split("=")[0] for a in args.grid})
    head = " | ".join(changed) if changed else "setting"
    print(f"validation accuracy on {args.dataset} (seeds {args.seeds}; the test split is not read)\n")
    print(f"| {head} | " + " | ".join("ε=∞" if math.isinf(e) else f"ε={e:g}" for e in args.epsilons) + " |")
    print("|" + "---|" * (max(1, len(changed)) + len(args.epsilons)))
    for setting in grid:
        cells = []
        for eps in args.epsilons:
            accs = [score(args.dataset, setting, eps, s) for s in args.seeds]
            cells.append(f"{sum(accs) / len(accs):.3f}")
        label = " | ".join(str(setting[k]) for k in changed) if changed else "defaults"
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
