"""Built-in datasets from scikit-learn, loaded offline, with public schemas.

Their preprocessing bounds are public: digits pixels lie in [0, 16] by
construction, and the summary-statistics tables that scikit-learn ships in the
datasets' published descriptions give each breast_cancer and wine feature's
min and max. Nothing is computed from the rows themselves.
"""

from __future__ import annotations

import re

import pandas as pd

from privtrain.data.schema import Column, Schema

BUILTIN = ("digits", "breast_cancer", "wine")
TARGET = "target"

_ROW = re.compile(r"^\s*(.+?):\s+(-?[\d.]+)\s+(-?[\d.]+)")


def _published_ranges(descr: str, n_features: int) -> list[tuple[float, float]]:
    """(min, max) per feature, in feature order, from the DESCR summary table."""
    section = descr.split("Summary Statistics", 1)[1]
    rows = [_ROW.match(line) for line in section.splitlines()]
    ranges = [(float(m.group(2)), float(m.group(3))) for m in rows if m][:n_features]
    if len(ranges) != n_features:  # a future scikit-learn changed its DESCR layout
        raise RuntimeError(f"expected {n_features} published ranges, found {len(ranges)}")
    return ranges


def load_builtin(name: str) -> tuple[pd.DataFrame, Schema, tuple[int, ...] | None]:
    """The raw table (features + ``target``), its public schema and image shape."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    features = [c for c in frame.columns if c != TARGET]
    if name == "digits":
        cols = tuple(Column(f, low=0.0, high=16.0) for f in features)
        image_shape = (1, 8, 8)
    else:
        ranges = _published_ranges(bunch.DESCR, len(features))
        cols = tuple(Column(f, low=lo, high=hi) for f, (lo, hi) in zip(features, ranges))
        image_shape = None
    classes = tuple(range(len(bunch.target_names)))
    return frame, Schema(cols, classes, "builtin"), image_shape
