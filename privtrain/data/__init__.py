"""Data: load a table, identify its source, and prepare public-bounded train/test arrays.

Flow: :func:`load` reads the raw table, fingerprints it and names its source (the ledger
key, the rows the ledger hashes to recognise overlap, and the row count are all a pre-flight
needs), then :func:`split` turns it into arrays after the ledger has reserved the run's budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from privtrain.data import pii_gate
from privtrain.data.builtin import BUILTIN, TARGET, load_builtin
from privtrain.data.encode import category_codes
from privtrain.data.files import read_table
from privtrain.data.fingerprint import canonicalize
from privtrain.data.schema import Schema, declared_schema, inferred_schema
from privtrain.errors import UserError
from privtrain.sources import Source

FILE_LOADERS = ("csv", "parquet", "synthetic")
ARRAY_LOADERS = ("image_folder", "custom")
TEXT_LOADERS = ("text",)  # a CSV of texts for a pretrained model (privtrain.data.text)
LOADERS = (*BUILTIN, *FILE_LOADERS, *ARRAY_LOADERS, *TEXT_LOADERS)
DECLARABLE = ("csv", "parquet", *ARRAY_LOADERS, *TEXT_LOADERS)  # loaders whose source the user declares


@dataclass(frozen=True)
class DatasetSpec:
    """What ``dataset.*`` in the config says, as plain values.

    Attributes:
        loader: how to read the rows: a built-in name, ``csv``, ``parquet`` or ``synthetic``.
        source: the declared data source (the people a budget protects), for files; None: the
            built-in's name, or else the content fingerprint (shown under the file's stem).
        derived_from: instead of ``source``: the known source this table was derived from (charged there).
        id_column: a column identifying a person; never a feature; lets the ledger recognise
            tables that share people even when their other columns differ.
        drop: ``dataset.drop``: columns never used for training (e.g. identifiers the PII gate found).
            They are removed from the features only: the fingerprint and the rows the ledger hashes
            stay those of the whole file, so the run is recognised as the same people as any other
            run on that file (see :mod:`privtrain.data.pii_gate`).
        pii_allow: ``dataset.pii.allow``: columns of personal data the user declares (recorded).
        public_n: ``dataset.public_n``: the table's size as known without reading it (a built-in's
            published size, or the data owner's declared approximate count). DP-SGD fixes its
            sampling rate, steps and delta from it, never from the rows read (docs/privacy.md).
    """

    loader: str
    source: str | None = None
    derived_from: str | None = None
    path: str | None = None
    target: str | None = TARGET
    id_column: str | None = None
    features: tuple[str, ...] | None = None
    schema: dict | None = None
    infer_schema: bool = False
    test_size: float = 0.2
    image: dict | None = None  # image_folder: channels, size, mean, std (declared public constants)
    factory: str | None = None  # custom: ``dataset._target_``, a callable returning a torch Dataset
    kwargs: dict | None = None  # custom: its keyword arguments
    size: int | None = None  # custom: the declared number of samples
    classes: tuple | None = None  # custom: the declared class labels
    tags: tuple[str, ...] = ()  # for a policy's rules by tag (a run can add tags to its source, never remove)
    drop: tuple[str, ...] = ()
    pii_allow: tuple[str, ...] = ()
    public_n: int | None = None
    sensitive: tuple[str, ...] = ()  # fairness: declared columns whose groups the card reports (categorical)
    text: dict | None = None  # text: column, max_length, tokenizer (privtrain.data.text)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DatasetSpec:
        d = dict(d)
        for key in ("features", "classes", "drop", "pii_allow", "sensitive"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass(frozen=True)
class Dataset:
    """A loaded raw table, canonically ordered, with its source, public schema and fingerprint."""

    source: Source
    frame: pd.DataFrame
    target: str
    schema: Schema
    fingerprint: str
    image_shape: tuple[int, ...] | None
    path: str | None = None
    id_column: str | None = None
    pii: dict | None = None  # the PII gate's record (privtrain.data.pii_gate.check), for the model card

    @property
    def name(self) -> str:
        """The source's readable name (what the ledger shows)."""
        return self.source.name

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.schema.features]

    @property
    def identity_table(self) -> pd.DataFrame:
        """The table the ledger recognises this dataset's people by: the raw table, or for samples (images, a
        user's Dataset) their pooled values and labels (:func:`privtrain.data.arrays.identity_frame`)."""
        from privtrain.data.arrays import ArraySchema, identity_frame

        if isinstance(self.schema, ArraySchema):
            return identity_frame(self.frame, self.schema)
        return self.frame


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


def load(spec: DatasetSpec, *, pii_handling: str | None = None) -> Dataset:
    """Load and fingerprint a dataset and name its source; tables pass the PII gate.

    Args:
        spec: the dataset's settings.
        pii_handling: None: the PII gate refuses direct identifiers used for training; otherwise the
            recipe's own treatment of them, recorded instead (the synthetic recipe's anonymization).

    Raises:
        UserError: bad input, including identifiers the gate refuses (before any charge).
    """
    if spec.loader not in LOADERS:
        raise UserError(f"dataset={spec.loader!r} is unknown; choose one of {', '.join(LOADERS)}.")
    if not 0.0 < spec.test_size < 1.0:
        raise UserError(f"dataset.test_size={spec.test_size} must lie in (0, 1).")
    if spec.source is not None and spec.loader not in DECLARABLE:
        raise UserError(
            f"dataset.source={spec.source!r}: dataset={spec.loader} names its own source; declare "
            f"dataset.source for {', '.join(DECLARABLE)} data only."
        )
    if spec.derived_from is not None and (spec.loader not in DECLARABLE or spec.source is not None):
        raise UserError(
            f"dataset.derived_from={spec.derived_from!r}: declare either dataset.source (whose people) or "
            f"dataset.derived_from (the known source this table came from), for "
            f"{', '.join(DECLARABLE)} data only."
        )
    if (spec.drop or spec.pii_allow) and spec.loader not in ("csv", "parquet", *TEXT_LOADERS):
        raise UserError(
            f"dataset.drop / dataset.pii.allow apply to dataset=csv or parquet; dataset={spec.loader} "
            "has no columns of yours to drop or declare."
        )
    if spec.loader in ARRAY_LOADERS:
        from privtrain.data.custom import load_custom
        from privtrain.data.images import load_image_folder

        frame, schema, image_shape = (load_image_folder if spec.loader == "image_folder" else load_custom)(spec)
        target, pii = "target", pii_gate.skipped(pii_gate.NOT_A_TABLE)
    elif spec.loader in BUILTIN:
        frame, schema, image_shape = load_builtin(spec.loader)
        target = TARGET
        pii = pii_gate.check(frame, [*(c.name for c in schema.features), target], where=f"dataset={spec.loader}")
    elif spec.loader in TEXT_LOADERS:  # a text column tokenized by the pretrained model's tokenizer
        from privtrain.data.text import text_pii, text_schema

        frame = read_table(spec.path, "csv")
        target, image_shape = _target(spec), None
        schema = text_schema(frame, spec)
        pii = text_pii(frame, spec, schema)
    elif spec.loader == "synthetic":  # rows from `privtrain run synthetic`, with the schema written beside them
        from privtrain.data.synthetic import load_synthetic

        frame, schema, target = load_synthetic(spec)
        image_shape, pii = None, pii_gate.skipped(pii_gate.DERIVED)
    else:
        frame = read_table(spec.path, file_kind(spec))
        target, image_shape = _target(spec), None
        features = _file_features(frame, spec)
        # The gate, before the schema (and so before any charge): identifiers are the first thing to fix.
        pii = pii_gate.check(
            frame,
            [*features, target],
            drop=spec.drop,
            allow=spec.pii_allow,
            handling=pii_handling,
            where=f"dataset.path={spec.path}",
        )
        schema = _file_schema(frame, spec, features, target)
    _check_rows(frame, schema, target)
    # The whole table, dropped columns included, is fingerprinted and handed to the ledger: the source and its
    # overlap with other tables are recognised as without dataset.drop (the same people, the same budget).
    frame, fingerprint = canonicalize(frame)
    return Dataset(
        source_of(spec, fingerprint), frame, target, schema, fingerprint, image_shape, spec.path, spec.id_column, pii
    )


def _check_rows(frame: pd.DataFrame, schema: Schema, target: str) -> None:
    """Rows that contradict the schema fail here, before any charge. Messages say "some rows": a count of the
    offending rows, like their values, is a fact about private rows that a refused run must not reveal."""
    if len(schema.classes) < 2:
        raise UserError(
            f"dataset.schema: the target {target!r} has {len(schema.classes)} class; a classifier needs at "
            "least 2 (declare the target's categories, or use another target)."
        )
    for col in schema.features:
        values = frame[col.name]
        if col.categories is not None:  # wrong-case categories would be all-zero inputs: refused before the charge
            category_codes(values, col.categories, f"dataset.schema.{col.name}")
            continue
        if (values.notna() & pd.to_numeric(values, errors="coerce").isna()).any():
            raise UserError(
                f"dataset.schema.{col.name}: some rows hold text where the schema declares numbers in "
                f"[{col.low:g}, {col.high:g}]; fix the file, or declare the column's categories."
            )


def source_of(spec: DatasetSpec, fingerprint: str) -> Source:
    """The source a table of this spec and content belongs to, before the ledger looks for overlap."""
    from pathlib import Path

    if spec.loader in BUILTIN:
        return Source(spec.loader, spec.loader, "builtin")
    if spec.source is not None:
        return Source(spec.source, spec.source, "declared")
    if spec.derived_from is not None:  # the ledger checks that it knows this source, and charges it
        return Source(spec.derived_from, spec.derived_from, "declared", derived_from=True)
    stem = (
        Path(str(spec.path)).name
        if spec.loader == "image_folder"
        else Path(str(spec.path)).stem
        if spec.path
        else spec.loader
    )
    return Source(fingerprint, stem, "derived" if spec.loader == "synthetic" else "content")


def _target(spec: DatasetSpec) -> str:
    """The label column of a user's table.

    Raises:
        UserError: ``dataset.target`` is null.
    """
    if spec.target is None:
        raise UserError(f"dataset.target is null; name the label column of {spec.path}: dataset.target=COLUMN.")
    return spec.target


def file_kind(spec: DatasetSpec) -> str:
    """``csv`` or ``parquet``: the loader's, or the file's suffix for ``synthetic``."""
    if spec.loader in ("csv", "parquet"):
        return spec.loader
    return "parquet" if str(spec.path).endswith(".parquet") else "csv"


def _file_features(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """The feature columns: ``dataset.features``, or every column but the target, the id column and ``dataset.drop``."""
    columns = list(frame.columns)
    if spec.target not in columns:
        raise UserError(f"dataset.target={spec.target!r} is not a column of {spec.path}; columns are {columns[:20]}.")
    if spec.id_column is not None:
        if spec.id_column not in columns:
            raise UserError(
                f"dataset.id_column={spec.id_column!r} is not a column of {spec.path}; columns are {columns[:20]}."
            )
        if spec.id_column == spec.target or (spec.features and spec.id_column in spec.features):
            raise UserError(
                f"dataset.id_column={spec.id_column!r} identifies people: it cannot be the target "
                "or a feature; drop it from dataset.features."
            )
    clash = [c for c in spec.drop if c == spec.target or (spec.features and c in spec.features)]
    if clash:
        raise UserError(
            f"dataset.drop: column(s) {clash} are also the target or listed in dataset.features; a dropped "
            "column is never used for training: remove it from one of them."
        )
    features = (
        list(spec.features)
        if spec.features
        else [c for c in columns if c not in (spec.target, spec.id_column) and c not in spec.drop]
    )
    missing = [f for f in features if f not in columns]
    if missing:
        raise UserError(f"dataset.features: column(s) {missing} are not in {spec.path}; columns are {columns[:20]}.")
    return features


def _file_schema(frame: pd.DataFrame, spec: DatasetSpec, features: list[str], target: str) -> Schema:
    if spec.schema:
        return declared_schema(dict(spec.schema), features, target)
    if spec.infer_schema:
        return inferred_schema(frame, features, target)
    raise UserError(
        "dataset.schema is not declared: preprocessing needs public bounds. Declare per-column "
        "min/max or categories in dataset.schema, or pass dataset.infer_schema=true to accept a "
        "schema inferred from the private data (the guarantee will say so)."
    )


def split(dataset: Dataset, *, seed: int, test_size: float) -> Splits:
    """Train/test split by a keyed function of each row alone (see :mod:`privtrain.data.assign`);
    features scaled by public bounds."""
    from privtrain.data.assign import held_out

    y = dataset.schema.encode_target(dataset.frame[dataset.target])
    x = dataset.schema.transform(dataset.frame)
    test = held_out(dataset.frame, seed=seed, test_size=test_size)
    if test.all() or not test.any():
        raise UserError(
            f"dataset.test_size={test_size}: the rows leave an empty "
            f"{'training' if test.all() else 'held-out'} split; use more rows or another test_size."
        )
    return Splits(x[~test], y[~test], x[test], y[test], dataset.schema.classes)
