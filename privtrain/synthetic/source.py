"""The real table a synthetic run starts from, its split, and the DP synthesizer's public domain.

Loading reads the rows only to fingerprint them (and to check the target column, so a bad
``dataset.target`` fails before any charge); fitting happens after the ledger reservation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from privtrain import data
from privtrain.data.builtin import BUILTIN
from privtrain.data.schema import Column, Schema
from privtrain.errors import UserError
from privtrain.privacy.dp_sgd import default_delta
from privtrain.sources import Source


@dataclass(frozen=True)
class RealTable:
    """The real table: raw, canonically ordered, fingerprinted, its source named; its public schema when declared."""

    source: Source
    frame: pd.DataFrame
    fingerprint: str
    target: str
    schema: Schema | None
    pii: dict | None = None  # the PII gate's record (findings and how this recipe handles them)

    @property
    def name(self) -> str:
        return self.source.name


def load_source(
    spec, *, need_target: bool, pii_handling: str = "recorded: read by the synthetic recipe or its audit"
) -> RealTable:
    """Built-in and declared/inferred tables load as usual; an SDV synthesizer also takes a bare CSV.

    The PII gate scans the table but does not refuse: ``pii_handling`` (this recipe's treatment of
    identifiers, e.g. SDV's Faker anonymizers) is recorded as the findings' status instead.
    """
    from privtrain.data import pii_gate
    from privtrain.data.files import read_table
    from privtrain.data.fingerprint import canonicalize

    if not 0.0 < spec.test_size < 1.0:
        raise UserError(f"dataset.test_size={spec.test_size} must lie in (0, 1).")
    if spec.drop:
        raise UserError(
            "dataset.drop is not supported by the synthetic recipe: every column of the table is "
            "synthesized and PII columns are anonymized (synth.pii_check); remove the columns from the "
            "file, or train with privtrain run dp_sgd."
        )
    if spec.loader in BUILTIN or spec.loader == "synthetic" or spec.schema or spec.infer_schema:
        if spec.loader not in BUILTIN and spec.loader != "synthetic":
            _check_target(read_table(spec.path, data.file_kind(spec)), spec, need_target)
        ds = data.load(spec, pii_handling=pii_handling)
        return RealTable(ds.source, ds.frame, ds.fingerprint, ds.target, ds.schema, ds.pii)
    if spec.loader not in data.LOADERS:
        raise UserError(f"dataset={spec.loader!r} is unknown; choose one of {', '.join(data.LOADERS)}.")
    frame = read_table(spec.path, data.file_kind(spec))
    _check_target(frame, spec, need_target)
    pii = pii_gate.check(
        frame,
        [c for c in frame.columns if c != spec.id_column],
        allow=spec.pii_allow,
        handling=pii_handling,
        where=f"dataset.path={spec.path}",
    )
    frame, fingerprint = canonicalize(frame)
    return RealTable(data.source_of(spec, fingerprint), frame, fingerprint, spec.target, None, pii)


def _check_target(frame: pd.DataFrame, spec, need_target: bool) -> None:
    if need_target and spec.target not in frame.columns:
        raise UserError(
            f"dataset.target={spec.target!r} is not a column of {spec.path}; utility (TSTR) needs the "
            f"label column: set dataset.target to one of {list(frame.columns)[:20]}, or "
            "synth.utility.enabled=false."
        )


def split(source: RealTable, *, seed: int, test_size: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same keyed split as ``data.split``: the synthesizer never sees the held-out rows."""
    from privtrain.data.assign import held_out

    frame = source.frame
    test = held_out(frame, seed=seed, test_size=test_size)
    if test.all() or not test.any():
        raise UserError(
            f"dataset.test_size={test_size}: the rows leave an empty "
            f"{'training' if test.all() else 'held-out'} split; use more rows or another test_size."
        )
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def table_name(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name) or "table"


def dp_domain(source: RealTable, model: str, metadata: str | None) -> tuple[list[Column], list[str]]:
    """(columns, notes) of the DP synthesizer's public domain (target included)."""
    schema = source.schema
    if schema is not None and schema.source in ("builtin", "declared"):
        target = Column(source.target, categories=tuple(schema.classes))
        origin = {"builtin": "the dataset's published ranges", "declared": "dataset.schema"}[schema.source]
        return [*schema.features, target], [
            f"domain (bounds, categories) from {origin}: public, not read from the rows"
        ]
    if metadata:
        return domain_from_metadata(metadata), [
            f"domain (bounds, categories) from synth.metadata={metadata}, declared public by the user"
        ]
    how = "dataset.infer_schema=true reads it off the private rows" if schema is not None else "none was declared"
    raise UserError(
        f"synth={model} needs a declared domain ({how}): declare per-column min/max or "
        "categories in dataset.schema, or pass a reviewed synth.metadata JSON with range_min/range_max "
        "and range_values for every column."
    )


def domain_from_metadata(path: str) -> list[Column]:
    import json

    from privtrain.synthetic.metadata import MARK, bounds_origin

    file = Path(str(path)).expanduser()
    try:
        raw = json.loads(file.read_text())
        (spec,) = raw["tables"].values()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"synth.metadata: {str(file)!r} is not a one-table SDV metadata JSON; fix the path.") from None
    if bounds_origin(raw) == "rows":  # the data's own extremes: the guarantee would claim a finite ε it lacks
        raise UserError(
            f"synth.metadata: {str(file)!r} holds bounds SDV read off the private rows ({MARK}.bounds "
            "is rows), not a public domain; declare public bounds in dataset.schema, or in a copy widen "
            f"range_min/range_max/range_values to public values and set {MARK}.bounds to declared. "
            "Nothing was charged."
        )
    out = []
    for name, col in spec["columns"].items():
        sdtype = col.get("sdtype")
        if sdtype == "numerical":
            if "range_min" not in col or "range_max" not in col or not col["range_max"] > col["range_min"]:
                raise UserError(f"synth.metadata: column {name!r} needs range_min < range_max for the DP synthesizer.")
            out.append(Column(name, low=float(col["range_min"]), high=float(col["range_max"])))
        elif sdtype in ("categorical", "ordinal", "boolean"):
            values = [True, False] if sdtype == "boolean" else col.get("range_values")
            if not values:
                raise UserError(f"synth.metadata: column {name!r} needs range_values for the DP synthesizer.")
            out.append(Column(name, categories=tuple(values)))
    if not out:
        raise UserError(f"synth.metadata: {str(file)!r} declares no numerical or categorical column to synthesize.")
    return out


def dp_delta(delta, n: int) -> float:
    if delta is None:
        return default_delta(n)
    delta = float(delta)
    if not 0.0 < delta < 1.0 / n:
        raise UserError(
            f"synth.delta={delta:g} must lie in (0, 1/n) = (0, {1.0 / n:.2e}) for "
            f"n={n} training rows; use e.g. {default_delta(n):.0e}."
        )
    return delta
