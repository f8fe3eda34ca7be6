"""The public bins of each column, from the declared schema alone.

Every bin a reference histogram counts comes from public facts: a categorical column's declared
categories (plus one bin for undeclared values), a numeric column's declared bins, or ``monitor.bins``
equal-width bins over its declared range in the declared transform's space (what the model sees). No
edge is ever read off the rows, so one extreme row cannot move a bin (it lands, clipped, in an end bin).

Each row falls in exactly one bin of each column: that is what fixes the release's sensitivity.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from privtrain.data.encode import TRANSFORMS, Transform
from privtrain.data.schema import Column, Schema

OTHER = "(undeclared)"  # a categorical value outside the declared categories: encoded as all zeros
MISSING = "(missing)"  # a missing value of a binned column: encoded as all zeros


@dataclass(frozen=True)
class ColumnBins:
    """A column's public bins: their labels, and how a value of the column maps to one of them."""

    column: Column
    labels: tuple[str, ...]
    kind: str  # categorical | binned | numeric

    def index(self, values: pd.Series) -> np.ndarray:
        """The bin of each value (ints in [0, len(labels))), through the column's own encoding: clipped to the
        declared bounds and transformed exactly as at training and predict."""
        return self.index_encoded(self.column.encode(values))

    def index_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """The bin of each row of the column's encoded block (shape (n, column.width))."""
        if self.kind == "numeric":  # one input in [0, 1]: equal-width bins in the transformed space
            k = len(self.labels)
            return np.minimum((encoded[:, 0] * k).astype(np.int64), k - 1)
        # one-hot (categories or declared bins); all zeros -> the last bin (undeclared / missing)
        hot = encoded.sum(axis=1) > 0
        return np.where(hot, encoded.argmax(axis=1), len(self.labels) - 1).astype(np.int64)

    def counts(self, values: pd.Series) -> np.ndarray:
        """Exact counts per bin."""
        return np.bincount(self.index(values), minlength=len(self.labels)).astype(np.float64)

    def counts_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """Exact counts per bin of an encoded block (training rows: private until noised)."""
        return np.bincount(self.index_encoded(encoded), minlength=len(self.labels)).astype(np.float64)


def column_bins(column: Column, n_bins: int) -> ColumnBins:
    """The public bins of one column (``n_bins`` applies to plain numeric columns)."""
    if column.categories is not None:
        return ColumnBins(column, (*map(str, column.categories), OTHER), "categorical")
    if column.bins is not None:
        declared = column.bins
        labels = tuple(
            f"[{a:g}, {b:g}{']' if i == len(declared) - 2 else ')'}" for i, (a, b) in enumerate(pairwise(declared))
        )
        return ColumnBins(column, (*labels, MISSING), "binned")
    edges = numeric_edges(column, n_bins)
    labels = tuple(f"[{a:.4g}, {b:.4g}{']' if i == n_bins - 1 else ')'}" for i, (a, b) in enumerate(pairwise(edges)))
    return ColumnBins(column, labels, "numeric")


def numeric_edges(column: Column, n_bins: int) -> list[float]:
    """The edges, in the column's own units, of ``n_bins`` equal-width bins in its transformed space."""
    inverses: dict[str, Transform] = {"none": lambda v: v, "log1p": np.expm1, "log": np.exp, "sqrt": np.square}
    inverse = inverses[column.transform]
    fn = TRANSFORMS[column.transform]
    low, high = column.bounds
    lo, hi = float(fn(low)), float(fn(high))
    return [float(inverse(lo + (hi - lo) * i / n_bins)) for i in range(n_bins + 1)]


def schema_bins(schema: Schema, n_bins: int) -> tuple[ColumnBins, ...]:
    """The bins of every feature of ``schema``, in its order."""
    return tuple(column_bins(c, n_bins) for c in schema.features)
