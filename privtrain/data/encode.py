"""Encoding one column by its declared, public schema: numeric transforms, public bins, category matching.

Every parameter used here is declared (public): the bounds, a transform's name, the bin edges, the
categories. Nothing is read off the rows, so the encoding costs no privacy, and the same code runs at
training and at predict time (the schema is saved with the run).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from privtrain.errors import UserError

# Monotone maps applied to the clipped value before min-max scaling by the mapped bounds.
Transform = Callable[[np.ndarray | float], np.ndarray | float]
TRANSFORMS: dict[str, Transform] = {"none": lambda x: x, "log1p": np.log1p, "log": np.log, "sqrt": np.sqrt}
# A transform's lowest allowed declared min: below it the map is undefined (strict: log 0 is -inf).
TRANSFORM_DOMAIN = {"log1p": (-1.0, True), "log": (0.0, True), "sqrt": (0.0, False)}
# Transforms whose parameters come from the data: refused by name (privtrain scales by public bounds).
DATA_DEPENDENT = ("standardize", "zscore", "normalize", "minmax", "quantile", "rank", "robust", "auto")

# What a YAML 1.1 parser (OmegaConf) turns into a boolean when a category is written unquoted.
YAML_BOOLEANS = {
    "y": True,
    "yes": True,
    "true": True,
    "on": True,
    "n": False,
    "no": False,
    "false": False,
    "off": False,
}


def scale(values: pd.Series, low: float, high: float, transform: str) -> np.ndarray:
    """One numeric column in [0, 1]: clipped to the declared bounds, transformed, min-max scaled by the
    transformed bounds; a missing value lands in the middle of the range. Shape (n, 1), float32."""
    fn = TRANSFORMS[transform]
    x = np.clip(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64), low, high)
    lo, hi = float(fn(low)), float(fn(high))
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (fn(x) - lo) / ((hi - lo) or 1.0)
    return np.nan_to_num(scaled, nan=0.5).astype(np.float32)[:, None]


def one_hot_bins(values: pd.Series, edges: tuple[float, ...]) -> np.ndarray:
    """One-hot over the public intervals ``[edges[i], edges[i+1])`` (the last one closed), after clipping to
    the outer edges; a missing value is all zeros. Shape (n, len(edges) - 1), float32."""
    x = np.clip(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64), edges[0], edges[-1])
    present = ~np.isnan(x)
    index = np.searchsorted(np.asarray(edges[1:-1]), x[present], side="right")
    out = np.zeros((len(x), len(edges) - 1), np.float32)
    out[np.flatnonzero(present), index] = 1.0
    return out


def out_of_range(values: pd.Series, low: float, high: float) -> int:
    """How many values lie outside ``[low, high]`` (for predict, whose rows are the user's own)."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return int(np.sum((x < low) | (x > high)))


def category_codes(values: pd.Series, categories: tuple, where: str) -> np.ndarray:
    """The index of each value's declared category; -1 for a missing or undeclared value.

    A value matches a category when it is equal, when both read the same as text (``1`` and ``"1"``: a
    quoted YAML number, a CSV column read as numbers), or when the category is a boolean that YAML made of
    an unquoted yes/no/on/off/y/n/true/false and the value is that word in any case (YAML has already lost
    the case) or the number 1/0 (as Python compares them). Other case differences are not matched: they
    refuse (below), since ``F``/``f`` may be meant as different values and a silent all-zero input is the
    failure this guards against.

    Raises:
        UserError: some values match a declared category only when case is ignored (the message names the
            column and the declared categories, never a value or a count of the private rows).
    """
    index = {_text(c): i for i, c in reversed(list(enumerate(categories)))}
    booleans = {bool(c): i for i, c in enumerate(categories) if isinstance(c, (bool, np.bool_))}
    folded = {_text(c).casefold() for c in categories}
    mapping, wrong_case = {}, False
    for value in pd.unique(values.dropna()):
        code = index.get(_text(value), -1)
        if code < 0 and booleans:
            code = booleans.get(_as_boolean(value), -1)  # type: ignore[arg-type]
        wrong_case = wrong_case or (code < 0 and _text(value).casefold() in folded)
        mapping[value] = code
    if wrong_case:
        raise UserError(
            f"{where}: some rows hold values that match the declared categories {list(categories)} only "
            "when case is ignored; declare the categories as the data spells them (case matters), or fix "
            "the rows."
        )
    return values.map(mapping).fillna(-1).to_numpy(dtype=np.int64)


def one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    """One-hot of category codes; -1 (missing or undeclared) is all zeros. Shape (n, width), float32."""
    out = np.zeros((len(codes), width), np.float32)
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


def _as_boolean(value) -> bool | None:
    """The boolean a yes/no word (any case) or a 0/1 number stands for; None for anything else."""
    if isinstance(value, str):
        return YAML_BOOLEANS.get(value.strip().casefold())
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    return None


def _text(value) -> str:
    """A category's text form: booleans and integral floats as YAML and CSV readers spell them."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
