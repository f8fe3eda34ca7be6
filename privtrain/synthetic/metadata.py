"""SDV metadata: detected from the data, loaded from a reviewed JSON file, or built from a public schema.

SDV 2.0's metadata records value ranges (``range_min``, ``range_max``, ``range_values``) read
off the data. For a non-DP synthesizer that is no extra leak (its output carries ε = ∞), but
the saved JSON must still never hold a PII value verbatim, so :func:`saved_dict` drops the
ranges of PII columns. The DP synthesizer never detects anything: its metadata comes from
the declared, public schema (:func:`from_schema`).

Every metadata JSON privtrain writes says where its bounds came from, under a top-level ``privtrain`` key
(:func:`save`): ``rows`` (SDV read them off the private rows), ``reviewed`` (a ``synth.metadata`` file the
user declared) or ``declared`` (the DP synthesizer's public domain). A file marked ``rows`` is refused as the
DP synthesizer's domain (:func:`bounds_origin`); privtrain removes the key before SDV reads a file (SDV
rejects unknown keys: to load such a file with SDV directly, drop ``privtrain`` first).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pandas as pd

from privtrain.errors import UserError
from privtrain.synthetic import pii

_RANGE_KEYS = ("range_values", "range_min", "range_max", "regex_format", "decimal_places", "high_cardinality")
MARK = "privtrain"  # privtrain's own top-level key in a metadata JSON it writes: where the bounds came from
_ORIGINS = {
    "rows": "SDV detected these ranges and categories from the private rows: they are not a public domain, and "
    "the DP synthesizer refuses this file as one",
    "reviewed": "copied from the reviewed synth.metadata file the run was given",
    "declared": "the DP synthesizer's declared public domain",
}


def detect(frame: pd.DataFrame, table: str):
    """SDV's own detection (``Metadata.detect_from_dataframes``) on one table."""
    from sdv.metadata import Metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Metadata.detect_from_dataframes({table: frame})


def load(path: str, frame: pd.DataFrame, table: str):
    """A reviewed metadata JSON (``synth.metadata=PATH``), checked against the data.

    Raises:
        UserError: the file is missing or unreadable, describes several tables, or does not
            match the data's columns or values.
    """
    from sdv.metadata import Metadata

    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise UserError(
            f"synth.metadata: no such file {str(file)!r}; pass a metadata JSON saved by SDV or a "
            "previous synthetic run, or synth.metadata=null to detect it."
        )
    try:
        raw = json.loads(file.read_text())
        if isinstance(raw, dict):
            raw.pop(MARK, None)  # privtrain's own note: SDV rejects keys it does not know
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metadata = Metadata.load_from_dict(raw, single_table_name=table)
    except Exception as exc:  # json and SDV raise many types
        raise UserError(f"synth.metadata: cannot read {str(file)!r} as SDV metadata: {_one_line(exc)}") from None
    tables = list(metadata.tables)
    if len(tables) != 1:
        raise UserError(
            f"synth.metadata: {str(file)!r} describes {len(tables)} tables {tables}; the synthetic "
            "recipe needs exactly one."
        )
    described = list(metadata.tables[tables[0]].columns)
    extra = [c for c in described if c not in frame.columns]
    missing = [c for c in frame.columns if c not in described]
    if extra or missing:
        parts = ([f"describes column(s) {extra[:5]} that the data lacks"] if extra else []) + (
            [f"does not describe column(s) {missing[:5]}"] if missing else []
        )
        raise UserError(
            f"synth.metadata: {str(file)!r} does not match the data: {'; '.join(parts)}; fix the JSON "
            "or pass synth.metadata=null to detect it."
        )
    metadata = _renamed(metadata, tables[0], table)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metadata.validate()
            metadata.validate_data({table: frame})
    except Exception as exc:
        raise UserError(f"synth.metadata: {str(file)!r} does not match the data: {_one_line(exc)}") from None
    return metadata


def _renamed(metadata, old: str, new: str):
    if old == new:
        return metadata
    from sdv.metadata import Metadata

    d = metadata.to_dict()
    d["tables"] = {new: d["tables"][old]}
    return Metadata.load_from_dict(d)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def mark_pii(metadata, frame: pd.DataFrame, table: str, *, check: bool, skip: frozenset[str] | set[str] = frozenset()):
    """List the PII columns SDV found, add privtrain's findings, and retype those so SDV anonymizes them.

    Args:
        metadata: SDV ``Metadata`` for ``table``.
        frame: the real table (privtrain's check samples its values).
        check: run privtrain's own check (``synth.pii_check``); SDV's findings are always listed.
        skip: columns never treated as PII (the utility target).

    Returns:
        ``(metadata, findings)``: a new ``Metadata`` and every PII column, SDV's first.
    """
    from sdv.metadata import Metadata

    d = copy.deepcopy(metadata.to_dict())
    spec = d["tables"][table]
    columns = spec["columns"]
    keys = {spec.get("primary_key")} | set(spec.get("alternate_keys") or [])
    findings = []
    for name, col in columns.items():
        if name in skip:
            continue
        if col.get("pii") or col.get("sdtype") in pii.PII_SDTYPES:
            why = "primary key" if name in keys else ("pii=True" if col.get("pii") else "sdtype")
            findings.append(pii.Finding(name, col["sdtype"], f"SDV typed it {col['sdtype']!r} ({why})", "sdv"))
    if check:
        sdv_cols = {f.column for f in findings}
        for f in pii.detect(frame, skip=sdv_cols | set(skip)):
            findings.append(f)
            if f.column in keys:
                continue  # a key is regenerated by SDV already; retyping it would break the key
            columns[f.column] = {"sdtype": f.sdtype, "pii": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Metadata.load_from_dict(d), findings


def saved_dict(metadata, findings: list[pii.Finding]) -> dict:
    """The metadata as saved beside the synthetic rows: PII columns carry no value from the data."""
    d = copy.deepcopy(metadata.to_dict())
    flagged = {f.column for f in findings}
    for spec in d["tables"].values():
        for name, col in spec["columns"].items():
            if name in flagged:
                for key in _RANGE_KEYS:
                    col.pop(key, None)
    return d


def from_schema(columns, table: str):
    """SDV metadata from a public domain: numerical with declared bounds, categorical with declared values."""
    from sdv.metadata import Metadata

    cols = {}
    for c in columns:
        if c.is_categorical:
            cols[c.name] = {"sdtype": "categorical", "range_values": list(c.categories)}
        else:
            cols[c.name] = {"sdtype": "numerical", "range_min": c.low, "range_max": c.high}
    d = {"tables": {table: {"columns": cols}}, "relationships": [], "METADATA_SPEC_VERSION": "V2"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Metadata.load_from_dict(d)


def sdtypes(metadata, table: str) -> dict[str, str]:
    return {k: v["sdtype"] for k, v in metadata.to_dict()["tables"][table]["columns"].items()}


def save(metadata_dict: dict, path: Path, *, bounds: str) -> Path:
    """Write the metadata with privtrain's note on where its bounds came from (``rows``, ``reviewed``,
    ``declared``), so a file whose bounds are the data's extremes is never taken for a public domain."""
    marked = {**metadata_dict, MARK: {"bounds": bounds, "note": _ORIGINS[bounds]}}
    path.write_text(json.dumps(marked, indent=2, default=str) + "\n")
    return path


def bounds_origin(raw: dict) -> str | None:
    """Where a metadata JSON's bounds came from, as privtrain marked it (None: not written by privtrain)."""
    mark = raw.get(MARK) if isinstance(raw, dict) else None
    return mark.get("bounds") if isinstance(mark, dict) else None


def saved_origin(reviewed_path: str | None) -> str:
    """Where a non-DP run's saved bounds come from: detected from the rows, or the reviewed file, whose own
    ``rows`` mark carries over (reviewing a detected file does not make its extremes public)."""
    if not reviewed_path:
        return "rows"
    try:
        raw = json.loads(Path(str(reviewed_path)).expanduser().read_text())
    except (OSError, ValueError):
        return "rows"
    return "rows" if bounds_origin(raw) == "rows" else "reviewed"
