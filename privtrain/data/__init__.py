"""Data: load a table, identify it, and prepare public-bounded train/test arrays.

Flow: :func:`load` reads the raw table and fingerprints it (the ledger key and
the row count are all a pre-flight needs), then :func:`split` turns it into
arrays after the ledger has reserved the run's budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from privtrain.data.builtin import BUILTIN, TARGET, load_builtin
from privtrain.data.files import read_table
from privtrain.data.fingerprint import canonicalize
from privtrain.data.schema import Schema, declared_schema, inferred_schema
from privtrain.errors import UserError

FILE_KINDS = ("csv", "parquet", "synthetic")
DATASETS = (*BUILTIN, *FILE_KINDS)


@dataclass(frozen=True)
class DatasetSpec:
    """What ``dataset.*`` in the config says, as plain values."""

    name: str
    path: str | None = None
    target: str = TARGET
    features: tuple[str, ...] | None = None
    schema: dict | None = None
    infer_schema: bool = False
    test_size: float = 0.2


@dataclass(frozen=True)
class Dataset:
    """A loaded raw table, canonically ordered, with its public schema and fingerprint."""

    name: str
    frame: pd.DataFrame
    target: str
    schema: Schema
    fingerprint: str
    image_shape: tuple[int, ...] | None
    path: str | None = None

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.schema.features]


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple

    @property
    def n_train(self) -> int:
        return len(self.y_train)


def load(spec: DatasetSpec) -> Dataset:
    """Load and fingerprint a dataset. Raises :class:`UserError` on bad input."""
    if spec.name not in DATASETS:
        raise UserError(f"dataset={spec.name!r} is unknown; choose one of {', '.join(DATASETS)}.")
    if spec.name in BUILTIN:
        frame, schema, image_shape = load_builtin(spec.name)
        target = TARGET
    elif spec.name == "synthetic":  # rows from `privtrain run synthetic`, with the schema written beside them
        from privtrain.data.synthetic import load_synthetic

        frame, schema, target = load_synthetic(spec)
        image_shape = None
    else:
        frame = read_table(spec.path, "parquet" if spec.name == "parquet" or str(spec.path).endswith(".parquet") else "csv")
        target, image_shape = spec.target, None
        schema = _file_schema(frame, spec)
    if not 0.0 < spec.test_size < 1.0:
        raise UserError(f"dataset.test_size={spec.test_size} must lie in (0, 1).")
    frame, fingerprint = canonicalize(frame)
    return Dataset(spec.name, frame, target, schema, fingerprint, image_shape, spec.path)


def _file_schema(frame: pd.DataFrame, spec: DatasetSpec) -> Schema:
    columns = list(frame.columns)
    if spec.target not in columns:
        raise UserError(f"dataset.target={spec.target!r} is not a column of {spec.path}; columns are {columns[:20]}.")
    features = list(spec.features) if spec.features else [c for c in columns if c != spec.target]
    missing = [f for f in features if f not in columns]
    if missing:
        raise UserError(f"dataset.features: column(s) {missing} are not in {spec.path}; columns are {columns[:20]}.")
    if spec.schema:
        return declared_schema(dict(spec.schema), features, spec.target)
    if spec.infer_schema:
        return inferred_schema(frame, features, spec.target)
    raise UserError(
        "dataset.schema is not declared: preprocessing needs public bounds. Declare per-column "
        "min/max or categories in dataset.schema, or pass dataset.infer_schema=true to accept a "
        "schema inferred from the private data (the guarantee will say so)."
    )


def split(dataset: Dataset, *, seed: int, test_size: float) -> Splits:
    """Deterministic, stratified train/test split; features scaled by public bounds."""
    from sklearn.model_selection import train_test_split

    y = dataset.schema.encode_target(dataset.frame[dataset.target])
    x = dataset.schema.transform(dataset.frame)
    counts = np.bincount(y, minlength=len(dataset.schema.classes))
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=stratify, random_state=seed)
    except ValueError as exc:
        raise UserError(f"dataset.test_size={test_size}: cannot split {len(y)} rows ({exc}).") from None
    return Splits(x_tr, y_tr, x_te, y_te, dataset.schema.classes)
