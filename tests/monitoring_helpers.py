"""Tables for the monitoring and fairness tests: a planted group effect and a shiftable numeric feature."""

from __future__ import annotations

import numpy as np
import pandas as pd

SCHEMA = (
    "+dataset.schema={x1: {min: 0, max: 100}, x2: {min: 0, max: 10}, sex: {categories: [F, M]}, "
    "age_band: {categories: [young, old]}, label: {categories: [no, yes]}}"
)


def table(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Rows whose label follows x1 and x2; the label noise is far larger for sex=F (a planted group effect)."""
    r = np.random.default_rng(seed)
    sex = r.choice(["F", "M"], n)
    age = r.choice(["young", "old"], n, p=[0.7, 0.3])
    x1 = np.clip(r.normal(50 + shift, 10, n), 0, 100).round(2)
    x2 = np.clip(r.normal(5, 2, n), 0, 10).round(2)
    noise = r.normal(0, 1, n) * np.where(sex == "F", 4.0, 0.2)
    y = np.where((x1 - 50) / 5 + (x2 - 5) + noise > 0, "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": x2, "sex": sex, "age_band": age, "label": y})


def overrides(path, n: int, *extra: str, epochs: int = 1, batch: int = 256) -> list[str]:
    return [
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=label",
        "dataset.source=people",
        f"dataset.public_n={n}",
        SCHEMA,
        f"recipe.epochs={epochs}",
        "recipe.progress=false",
        f"recipe.batch_size={batch}",
        f"recipe.max_physical_batch_size={batch}",
        *extra,
    ]
