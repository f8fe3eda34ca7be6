"""Columns as the ledger recognises them: a kind, table-relative codes per cell, and a name-free descriptor.

Routine preprocessing changes a column's values but not what they say about each row's place in the
column, so every cell gets a *code* computed from its own column:

* **discrete** (at most ``DISCRETE_MAX`` distinct values). Numbers on a grid (digits' 0..16, 0/1, counts)
  are coded by their grid index from a robust anchor level (the smallest value when at least 5% of rows
  hold it, else the largest, else the most frequent): an increasing affine map (standardising, /16, a unit
  change) or a precision change keeps the index exactly, and a row subset does not move the anchor. Text
  (stripped, case-folded) and gridless numbers are coded by their rank among the column's frequent values.
  Values rarer than ``RARE_SHARE`` are pooled as "other" where the rank is the code.
* **continuous** (more distinct numbers): the quantile bin of the value's mid-rank among ``BINS`` equal-
  frequency bins (ranks are invariant to every increasing map; a subset moves them by a sampling error,
  so cells that close to an edge probe both bins); and, for a column on a grid (values printed with a
  fixed number of decimals), its exact grid index from the median, up to one unknown offset per column
  that the comparison searches for (:mod:`privtrain.ledger.overlap`).
* **exact** (text with many distinct values, or the declared id column): a keyed hash of the value.

A new column is mapped onto a stored column's codes by :mod:`privtrain.ledger.matching` (grid, ascending,
descending or frequency order: whichever reproduces the stored profile, which undoes F/M -> 0/1 in either
direction and any bijective recoding whose frequencies differ).

The *descriptor* stored per column holds no value and no count: its kind, a discrete column's cumulative
shares (rounded to 0.5%, rare values pooled) with their codes, a continuous column's shape (standardised
quantiles rounded to 0.05) and its *grain* (grid step / IQR, two digits). The grain is also a gate: a
source column on a grid matches no column whose values left the grid (noise added to every cell); see
docs/ledger.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DISCRETE_MAX = 24
RARE_SHARE = 0.005
ANCHOR_SHARE = 0.05
BINS = 8
MIN_GRID_LEVELS = 16  # a continuous column with fewer grid levels than this gets no grid codes
SHAPE_PROBS = (0.05, 0.1, 0.25, 0.75, 0.9, 0.95)
NULL = -(2**62)
OTHER = -(2**62) + 1


@dataclass
class View:
    """One column of one table: its kind, codes, and what a comparison needs to map it. Never stored."""

    position: int
    name: str
    kind: str  # "discrete" | "continuous" | "exact"
    codes: np.ndarray = field(repr=False)  # int64 per row: grid index, frequent rank or quantile bin
    descriptor: dict = field(default_factory=dict)
    level_of_row: np.ndarray | None = field(default=None, repr=False)  # discrete: level per row (-1: null)
    level_shares: np.ndarray | None = field(default=None, repr=False)  # discrete: share of each level (asc)
    level_values: np.ndarray | None = field(default=None, repr=False)  # discrete numbers: each level's value
    step: float = 0.0  # grid step (0: no grid)
    quantile: np.ndarray | None = field(default=None, repr=False)  # continuous: mid-rank quantile per row
    grid: np.ndarray | None = field(default=None, repr=False)  # continuous on a grid: its code (below)
    mid: np.ndarray | None = field(default=None, repr=False)  # ... grid index from the median
    zero: bool = False  # ... 0 is on the grid: grid = value/step
    spread: float = 0.0  # continuous: std in grid steps


def _name(text) -> str:
    return re.sub(r"[^0-9a-z]+", "", str(text).casefold())


def _values(series: pd.Series) -> tuple[np.ndarray, np.ndarray, bool]:
    """(values, null mask, numeric?): numbers as float64, anything else as stripped, case-folded text."""
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype("float64")
    null = series.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), null, True
    as_num = pd.to_numeric(series, errors="coerce")
    if not (as_num.isna().to_numpy() & ~null).any():
        return as_num.to_numpy(dtype=np.float64, na_value=np.nan), null, True
    text = np.array(["" if n else str(v).strip().casefold() for v, n in zip(series.to_numpy(), null)], dtype=object)
    return text, null, False


def grid_step(levels: np.ndarray) -> float:
    """The step of the grid the sorted distinct values ``levels`` lie on (0.0: none). Affine maps scale it;
    float32 round-off does not hide a grid coarser than it; noise destroys it.

    A dense grid shows in the smallest gaps (a small divisor of them); a sparse one (incomes to the cent) is
    the approximate greatest common divisor of the gaps, found by Euclid's algorithm with a tolerance."""
    if len(levels) < 2:
        return 0.0
    size = max(float(np.abs(levels).max()), float(levels[-1] - levels[0]))
    d = np.diff(levels)
    d = d[d > 1e-9 * size]
    if len(d) == 0:
        return 0.0
    if len(d) == 1:
        return float(d[0])
    smallest = float(np.quantile(d, 0.02, method="lower"))
    candidates = [smallest / k for k in range(1, 11)]
    g = float(d.min())
    for x in np.sort(d)[:32]:
        a, b = float(x), g
        while b > 1e-9 * size:
            a, b = b, math.fmod(a, b)
        g = a
    candidates.append(g)
    for h in candidates:
        r = d / h
        if h > 1e-9 * size and np.mean(np.abs(r - np.round(r)) < 0.05) >= 0.95:
            return h
    return 0.0


def view(series: pd.Series, position: int, *, exact: bool = False, hash_text=None) -> View | None:
    """The table-relative view of one column, or None for a column with fewer than two values.

    Args:
        series: the column.
        position: its index in the table (a tie-breaker when contents look alike).
        exact: the declared id column: compared on its exact values.
        hash_text: ``f(array of str) -> uint64 array``, the keyed hash of exact values.
    """
    values, null, numeric = _values(series)
    present = values[~null]
    levels, inverse, counts = np.unique(present, return_inverse=True, return_counts=True)
    desc = {"name": _name(series.name), "pos": position, "null": round(float(null.mean()), 3)}
    if len(levels) < 2 and not exact:
        return None
    if exact or (not numeric and len(levels) > DISCRETE_MAX):
        text = np.array([_canonical(v) for v in values], dtype=object)
        codes = hash_text(text).view(np.int64).copy()
        codes[null] = NULL
        return View(position, str(series.name), "exact", codes, {**desc, "k": "x"})
    if len(levels) <= DISCRETE_MAX:
        return _discrete(series.name, position, desc, levels if numeric else None, inverse, counts, null)
    return _continuous(series.name, position, desc, values, null, levels, inverse, counts)


def _canonical(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def anchor_level(rule: str, shares: np.ndarray) -> int:
    """The level a grid index counts from: the smallest, the largest or the most frequent value."""
    return {"min": 0, "max": len(shares) - 1}.get(rule, int(np.argmax(shares)))


def _discrete(name, position, desc, numbers, inverse, counts, null) -> View:
    n = len(null)
    shares = counts / n
    level_of_row = np.full(n, -1, np.int64)
    level_of_row[~null] = inverse
    step = grid_step(numbers) if numbers is not None else 0.0
    if step > 0:
        rule = "min" if shares[0] >= ANCHOR_SHARE else "max" if shares[-1] >= ANCHOR_SHARE else "mode"
        level_code = np.round((numbers - numbers[anchor_level(rule, shares)]) / step).astype(np.int64)
        frequent = shares >= RARE_SHARE
        extra: dict[str, str | None] = {"grid": rule}
    else:
        frequent = shares >= RARE_SHARE
        level_code = np.where(frequent, np.cumsum(frequent) - 1, OTHER)
        extra = {"grid": None}
    codes = np.where(level_of_row >= 0, level_code[np.maximum(level_of_row, 0)], NULL)
    return View(
        position,
        str(name),
        "discrete",
        codes.astype(np.int64),
        {**desc, "k": "d", **extra, "cells": _cells(shares, frequent, level_code)},
        level_of_row,
        shares,
        numbers,
        step,
    )


def _quantiles(levels: np.ndarray, counts: np.ndarray, probs) -> np.ndarray:
    """np.quantile (linear) of the values ``levels`` repeated ``counts`` times, without repeating them."""
    ends = np.cumsum(counts)
    h = (ends[-1] - 1) * np.asarray(probs, float)
    lo = np.floor(h).astype(np.int64)
    at = lambda k: levels[np.searchsorted(ends, k, side="right")]  # noqa: E731  (the k-th smallest value)
    return at(lo) + (h - lo) * (at(np.minimum(lo + 1, ends[-1] - 1)) - at(lo))


def _continuous(name, position, desc, values, null, levels, inverse, counts) -> View:
    n = int(counts.sum())
    u_level = (np.cumsum(counts) - counts / 2) / n  # each value's mid-rank quantile (ties share it)
    u = np.full(len(values), np.nan)
    u[~null] = u_level[inverse]
    codes = np.where(null, NULL, np.minimum((np.nan_to_num(u) * BINS).astype(np.int64), BINS - 1))
    q = _quantiles(levels, counts, [*SHAPE_PROBS, 0.5])
    q25, q75, median = q[SHAPE_PROBS.index(0.25)], q[SHAPE_PROBS.index(0.75)], q[-1]
    scale = (q75 - q25) or (levels[-1] - levels[0])
    step = grid_step(levels)
    shape = [round(float(v) * 20) / 20 for v in np.clip((q[:-1] - median) / scale, -20, 20)]
    extra = {"grain": 0.0, "grid": False, "shape": shape}
    grid = mid = None
    spread, zero = 0.0, False
    if step > 0 and (levels[-1] - levels[0]) / step >= MIN_GRID_LEVELS:
        index = levels / step
        on_grid = np.abs(index - np.round(index)) < 0.02
        zero = bool(counts[on_grid].sum() >= 0.99 * n)  # 0 is on the grid: no offset
        anchor = levels[np.argmin(np.abs(levels - median))]
        mid = np.where(null, NULL, np.round((np.nan_to_num(values) - anchor) / step)).astype(np.int64)
        grid = np.where(null, NULL, np.round(np.nan_to_num(values) / step)).astype(np.int64) if zero else mid
        mean = float((levels * counts).sum() / n)
        spread = float(np.sqrt((counts * (levels - mean) ** 2).sum() / n) / step)
        extra = {**extra, "grain": float(f"{step / scale:.2g}"), "grid": True, "zero": zero}
    else:
        step = 0.0
    return View(
        position,
        str(name),
        "continuous",
        codes.astype(np.int64),
        {**desc, "k": "c", **extra},
        quantile=u,
        step=step,
        grid=grid,
        spread=spread,
        mid=mid,
        zero=zero,
    )


def _cells(shares: np.ndarray, frequent: np.ndarray, level_code: np.ndarray) -> list[list]:
    """A discrete column's profile in ascending value order: [[upper bound (cumulative share), code], ...];
    consecutive rare values form one gap (code None). Rounded to 0.5%: no value, no count."""
    out: list[list] = []  # [cumulative share, code or None]
    cum = 0.0
    for share, freq, code in zip(shares, frequent, level_code):
        cum += float(share)
        if not freq and out and out[-1][1] is None:
            out[-1][0] = cum
        else:
            out.append([cum, int(code) if freq else None])
    return [[round(c * 200) / 200, code] for c, code in out]
