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

A new column is mapped onto a stored column's codes by :func:`level_codings` (grid, ascending, descending
or frequency order: whichever reproduces the stored profile, which undoes F/M -> 0/1 in either direction
and any bijective recoding whose frequencies differ) or :func:`map_continuous`.

The *descriptor* stored per column holds no value and no count: its kind, a discrete column's cumulative
shares (rounded to 0.5%, rare values pooled) with their codes, a continuous column's shape (standardised
quantiles rounded to 0.05) and its *grain* (grid step / IQR, two digits). Columns are matched by content
(:func:`correspond`); names and positions only break ties. The grain is also a gate: a source column on
a grid matches no column whose values left the grid (noise added to every cell); see docs/ledger.md.
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
Z_PROBE = 1.5       # a continuous cell within this many sampling errors of a bin edge probes both bins
GRAIN_FLOOR = 0.2   # a gridded source column matches a new column whose grain is at least this share of its own
MAX_COST = 0.6      # columns farther apart than this (see _cost) do not correspond
NULL = -(2 ** 62)
OTHER = -(2 ** 62) + 1


@dataclass
class View:
    """One column of one table: its kind, codes, and what a comparison needs to map it. Never stored."""

    position: int
    name: str
    kind: str                                  # "discrete" | "continuous" | "exact"
    codes: np.ndarray = field(repr=False)      # int64 per row: grid index, frequent rank or quantile bin
    descriptor: dict = field(default_factory=dict)
    level_of_row: np.ndarray | None = field(default=None, repr=False)  # discrete: level per row (-1: null)
    level_shares: np.ndarray | None = field(default=None, repr=False)  # discrete: share of each level (asc)
    level_values: np.ndarray | None = field(default=None, repr=False)  # discrete numbers: each level's value
    step: float = 0.0                                                  # grid step (0: no grid)
    quantile: np.ndarray | None = field(default=None, repr=False)      # continuous: mid-rank quantile per row
    grid: np.ndarray | None = field(default=None, repr=False)          # continuous on a grid: its code (below)
    mid: np.ndarray | None = field(default=None, repr=False)           # ... grid index from the median
    zero: bool = False                                                 # ... 0 is on the grid: grid = value/step
    spread: float = 0.0                                                # continuous: std in grid steps


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
    n = len(values)
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
    return _continuous(series.name, position, desc, values, null, levels)


def _canonical(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _anchor(rule: str, shares: np.ndarray) -> int:
    return {"min": 0, "max": len(shares) - 1}.get(rule, int(np.argmax(shares)))


def _discrete(name, position, desc, numbers, inverse, counts, null) -> View:
    n = len(null)
    shares = counts / n
    level_of_row = np.full(n, -1, np.int64)
    level_of_row[~null] = inverse
    step = grid_step(numbers) if numbers is not None else 0.0
    if step > 0:
        rule = "min" if shares[0] >= ANCHOR_SHARE else "max" if shares[-1] >= ANCHOR_SHARE else "mode"
        level_code = np.round((numbers - numbers[_anchor(rule, shares)]) / step).astype(np.int64)
        frequent = shares >= RARE_SHARE
        extra = {"grid": rule}
    else:
        frequent = shares >= RARE_SHARE
        level_code = np.where(frequent, np.cumsum(frequent) - 1, OTHER)
        extra = {"grid": None}
    codes = np.where(level_of_row >= 0, level_code[np.maximum(level_of_row, 0)], NULL)
    return View(position, str(name), "discrete", codes.astype(np.int64),
                {**desc, "k": "d", **extra, "cells": _cells(shares, frequent, level_code)},
                level_of_row, shares, numbers, step)


def _continuous(name, position, desc, values, null, levels) -> View:
    present = values[~null]
    ranks = pd.Series(present).rank(method="average").to_numpy()
    u = np.full(len(values), np.nan)
    u[~null] = (ranks - 0.5) / len(present)
    codes = np.where(null, NULL, np.minimum((np.nan_to_num(u) * BINS).astype(np.int64), BINS - 1))
    q25, q75 = np.quantile(present, [0.25, 0.75])
    scale = (q75 - q25) or (levels[-1] - levels[0])
    step = grid_step(levels)
    extra = {"grain": 0.0, "grid": False, "shape": _shape(present)}
    grid = mid = None
    spread, zero = 0.0, False
    if step > 0 and (levels[-1] - levels[0]) / step >= MIN_GRID_LEVELS:
        index = present / step
        zero = bool(np.mean(np.abs(index - np.round(index)) < 0.02) >= 0.99)  # 0 is on the grid: no offset
        anchor = levels[np.argmin(np.abs(levels - np.median(present)))]
        mid = np.where(null, NULL, np.round((np.nan_to_num(values) - anchor) / step)).astype(np.int64)
        grid = np.where(null, NULL, np.round(np.nan_to_num(values) / step)).astype(np.int64) if zero else mid
        spread = float(np.std(present) / step)
        extra = {**extra, "grain": float(f"{step / scale:.2g}"), "grid": True, "zero": zero}
    else:
        step = 0.0
    return View(position, str(name), "continuous", codes.astype(np.int64), {**desc, "k": "c", **extra},
                quantile=u, step=step, grid=grid, spread=spread, mid=mid, zero=zero)


def _cells(shares: np.ndarray, frequent: np.ndarray, level_code: np.ndarray) -> list[list]:
    """A discrete column's profile in ascending value order: [[upper bound (cumulative share), code], ...];
    consecutive rare values form one gap (code None). Rounded to 0.5%: no value, no count."""
    out, cum = [], 0.0
    for share, freq, code in zip(shares, frequent, level_code):
        cum += float(share)
        if not freq and out and out[-1][1] is None:
            out[-1][0] = cum
        else:
            out.append([cum, int(code) if freq else None])
    return [[round(c * 200) / 200, code] for c, code in out]


def _shape(x: np.ndarray) -> list[float]:
    q = np.quantile(x, [*SHAPE_PROBS, 0.5])
    q25, q75 = np.quantile(x, [0.25, 0.75])
    scale = (q75 - q25) or (x.max() - x.min()) or 1.0
    return [round(float(v) * 20) / 20 for v in np.clip((q[:-1] - q[-1]) / scale, -20, 20)]


# --- mapping a new column onto a stored column's codes ------------------------------------------------


def _level_codes_by_position(shares: np.ndarray, order: np.ndarray, cells: list, by_share: bool) -> np.ndarray:
    """Each new level's stored code: the stored cell (in value or frequency order) holding its mid share."""
    upper = np.array([c[0] for c in cells], float)
    width = np.diff(np.r_[0.0, upper])
    code = np.array([OTHER if c[1] is None else c[1] for c in cells], np.int64)
    if by_share:
        src = np.argsort(-np.where(code != OTHER, width, -1.0), kind="stable")
        width, code = width[src], code[src]
        upper = np.cumsum(width)
    cum = np.cumsum(shares[order])
    mids = (cum - shares[order] / 2) / max(cum[-1], 1e-12) * (upper[-1] if len(upper) else 1.0)
    cell = np.clip(np.searchsorted(upper, mids, side="left"), 0, len(upper) - 1)
    out = np.full(len(shares), OTHER, np.int64)
    taken: dict[int, tuple[int, float]] = {}
    for i, lvl in enumerate(order):
        c, gap = int(code[cell[i]]), abs(shares[lvl] - width[cell[i]])
        if c != OTHER and (c not in taken or gap < taken[c][1]):
            if c in taken:
                out[taken[c][0]] = OTHER
            taken[c] = (lvl, gap)
            out[lvl] = c
    return out


def level_codings(new: View, desc: dict) -> list[tuple[float, np.ndarray]]:
    """Candidate stored codes for each level of the discrete column ``new`` under the stored ``desc``, best
    (lowest score) first.

    Candidates: the grid index from the same anchor rule, increasing or decreasing (when both columns are on
    a grid), and the stored code of the cell holding each value's mid cumulative share in ascending,
    descending or frequency order. The score is the L1 distance between the new shares and the stored shares
    of the codes they map to (0: the same profile).
    """
    shares, cells = new.level_shares, desc["cells"]
    widths = np.diff(np.r_[0.0, [c[0] for c in cells]])
    stored = {c[1]: w for c, w in zip(cells, widths) if c[1] is not None}
    candidates = []
    if desc.get("grid") and new.step > 0:
        values = new.level_values
        flipped = {"min": "max", "max": "min"}.get(desc["grid"], "mode")
        for sign, rule in ((1, desc["grid"]), (-1, flipped)):
            anchor = values[_anchor(rule, shares)]
            candidates.append(np.round(sign * (values - anchor) / new.step).astype(np.int64))
    asc = np.arange(len(shares))
    for order, by_share in ((asc, False), (asc[::-1], False), (np.argsort(-shares, kind="stable"), True)):
        candidates.append(_level_codes_by_position(shares, order, cells, by_share))
    out: list[tuple[float, np.ndarray]] = []
    for level_code in candidates:
        if any(np.array_equal(level_code, c) for _, c in out):
            continue
        score = sum(abs(sh - stored[c]) if c in stored else sh for sh, c in zip(shares.tolist(), level_code.tolist()))
        out.append((round(float(score), 6), level_code))
    return sorted(out, key=lambda t: t[0])


def row_codes(new: View, level_code: np.ndarray) -> np.ndarray:
    """The code of every row of a discrete column, given each level's code."""
    return np.where(new.level_of_row >= 0, level_code[np.maximum(new.level_of_row, 0)], NULL).astype(np.int64)


@dataclass(frozen=True)
class Probes:
    """A continuous column's codes against a stored one: the nearest bin, the bin across the nearest edge
    (``second``, equal to ``first`` when the cell is not near an edge), and P(the true bin is among them)."""

    first: np.ndarray
    second: np.ndarray
    survival: np.ndarray


def sampling_sd(n_new: float, n_known: float) -> float:
    """How far a quantile of an n-row table can sit from the same quantile of an N-row table that shares its
    rows, per unit of sqrt(u(1-u)): sqrt(|1/n - 1/N|)."""
    return math.sqrt(abs(1.0 / max(n_new, 1) - 1.0 / max(n_known, 1)))


def map_continuous(new: View, n_known: float) -> Probes:
    """Codes of ``new`` with probes near bin edges, and each cell's chance that its true bin is probed."""
    from scipy.special import ndtr

    u = new.quantile
    n = int(np.isfinite(u).sum())
    sd = np.sqrt(np.clip(np.nan_to_num(u * (1 - u)), 1.0 / max(n, 1), None)) * sampling_sd(n, n_known)
    pos = np.nan_to_num(u) * BINS
    first = np.minimum(pos.astype(np.int64), BINS - 1)
    frac = pos - first
    up = frac >= 0.5
    dist = np.where(up, 1 - frac, frac) / BINS
    inner = np.where(up, first < BINS - 1, first > 0)
    probe = inner & (dist < Z_PROBE * sd)
    second = np.where(probe, first + np.where(up, 1, -1), first)
    miss = np.where(inner & ~probe & (sd > 0), ndtr(-dist / np.maximum(sd, 1e-300)), 0.0)
    null = ~np.isfinite(u)
    return Probes(np.where(null, NULL, first), np.where(null, NULL, second), 1.0 - miss)


def offset_range(new: View, n_known: float, z: float = 3.0) -> int:
    """How many grid steps the median anchor of ``new`` may sit from the stored table's (z standard errors)."""
    n = int((new.mid != NULL).sum())
    return int(math.ceil(z * 1.2533 * new.spread * sampling_sd(n, n_known)))


def map_grid(new: View, desc: dict, n_known: float, limit: int) -> list[np.ndarray] | None:
    """Candidate grid codes of ``new`` under a stored grid column, nearest first (None: more than ``limit``).

    When 0 is on both grids (the values were only rescaled: units, /16, float32) the grid index itself is
    the code. When the stored column was itself shifted (its codes count from its median), the new column's
    index from its own median is off by a sampling error, searched over. A new column shifted away from a
    stored absolute grid is not read here (no stored value says where its median was; coarse groups read it).
    """
    if new.grid is None:
        return None
    if desc.get("zero"):
        return [new.grid] if new.zero else None
    reach = offset_range(new, n_known)
    if 2 * reach + 1 > limit:
        return None
    valid = new.mid != NULL
    return [np.where(valid, new.mid + k, NULL) for k in sorted(range(-reach, reach + 1), key=abs)]


# --- correspondence: which new column is which stored column ------------------------------------------


def _cost(new: View, desc: dict) -> float:
    """How unlike a stored column the new column is (inf: cannot be the same column)."""
    kinds = {"discrete": "d", "continuous": "c", "exact": "x"}
    if kinds[new.kind] != desc["k"]:
        return math.inf
    cost = abs(new.descriptor["null"] - desc["null"])
    if desc["k"] == "d":
        stored_levels = sum(1 for c in desc["cells"] if c[1] is not None)
        if int((new.level_shares >= 2 * RARE_SHARE).sum()) > stored_levels + 1:
            return math.inf  # a map of values cannot create values
        cost += level_codings(new, desc)[0][0] / 2
    elif desc["k"] == "c":
        if not grain_compatible(new.descriptor["grain"], desc["grain"]):
            return math.inf
        cost += float(np.mean(np.abs(np.subtract(new.descriptor["shape"], desc["shape"])))) / 2
    else:
        cost += 0.3
    if new.descriptor["name"] and new.descriptor["name"] == desc["name"]:
        cost -= 0.2
    if new.position == desc["pos"]:
        cost -= 0.05
    return cost


def grain_compatible(new: float, known: float) -> bool:
    """A source column on a grid matches only a column on a grid not much finer (rounding coarsens, noise
    removes the grid)."""
    return known == 0 or (new > 0 and new >= GRAIN_FLOOR * known)


def _sorted_shares(shares) -> np.ndarray:
    out = np.zeros(DISCRETE_MAX + 1)
    top = np.sort(np.asarray(shares, float))[::-1][: DISCRETE_MAX + 1]
    out[: len(top)] = top
    return out


SHORTLIST = 4  # stored discrete columns per new one whose full cost is computed (nearest by sorted shares)


def correspond(new: list[View], known: list[dict]) -> dict[int, int]:
    """{stored column index: new column index} for the pairs that match by content (Hungarian assignment).

    A discrete pair's full cost (every coding tried) is computed only for the ``SHORTLIST`` stored columns
    nearest by sorted shares (a profile no recoding changes), and for a stored column of the same name or
    position."""
    from scipy.optimize import linear_sum_assignment

    if not new or not known:
        return {}
    cost = np.full((len(new), len(known)), math.inf)
    disc_new = [j for j, v in enumerate(new) if v.kind == "discrete"]
    disc_known = [k for k, d in enumerate(known) if d["k"] == "d"]
    if disc_new and disc_known:
        a = np.array([_sorted_shares(new[j].level_shares) for j in disc_new])
        b = np.array([_sorted_shares(np.diff(np.r_[0.0, [c[0] for c in known[k]["cells"]]])) for k in disc_known])
        near = np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2)
        for row, j in enumerate(disc_new):
            keep = set(np.argsort(near[row], kind="stable")[:SHORTLIST].tolist())
            keep |= {i for i, k in enumerate(disc_known)
                     if known[k]["pos"] == new[j].position or known[k]["name"] == new[j].descriptor["name"]}
            for i in keep:
                cost[j, disc_known[i]] = _cost(new[j], known[disc_known[i]])
    for j, v in enumerate(new):
        if v.kind != "discrete":
            for k, d in enumerate(known):
                cost[j, k] = _cost(v, d)
    rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
    return {int(k): int(j) for j, k in zip(rows, cols) if cost[j, k] < MAX_COST}
