"""Column groups: which columns' codes a registered table's sketch is kept over.

A group is ``{"cols": [view indices], "grid": [uses grid codes?]}``; its code tuples must be distinct enough
to identify people (``TARGET_DISTINCT`` of the rows, at least ``MIN_DISTINCT``), and small enough that a
table with columns dropped still holds some group whole:

* the declared id column (or another exact column with distinct values) alone;
* up to ``MAX_GROUPS`` coarse groups: greedily the column that makes the group's code tuples most distinct,
  preferring columns no earlier group used, until ``TARGET_DISTINCT``;
* up to ``MAX_GRID_GROUPS`` fine groups: one or two columns on a grid (exact values) plus the discrete
  columns that make them distinct, each grid column in one group if possible.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
import pandas as pd

MAX_GROUPS = 3  # coarse groups (quantile bins: robust to row subsets)
MAX_GRID_GROUPS = 3  # fine groups (grid values: robust to column subsets)
MAX_GROUP_COLUMNS = 8
TARGET_DISTINCT = 0.95
MIN_DISTINCT = 0.5  # a group whose codes are less distinct than this identifies nobody
SELECT_ROWS = 4000  # groups are chosen on a random sample of at most this many rows
GRID_CANDIDATES = 32  # grid columns considered for fine groups (the most distinct ones)


def combine(acc: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return acc * np.uint64(0x9E3779B97F4A7C15) + codes.astype(np.uint64) + np.uint64(0x632BE59BD9B4E019)


def distinct(keys: np.ndarray) -> float:
    return pd.unique(keys).size / max(len(keys), 1)


def choose(table, rng=None) -> list[dict]:
    """The groups of ``table`` (see the module docstring), chosen on at most ``SELECT_ROWS`` of its rows."""
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(64))
    n = table.n_rows
    pick = np.sort(rng.choice(n, SELECT_ROWS, replace=False)) if n > SELECT_ROWS else np.arange(n)
    views = table.views
    codes = [v.codes[pick].astype(np.uint64) for v in views]
    ids = [j for j, v in enumerate(views) if v.kind == "exact" and distinct(codes[j]) >= TARGET_DISTINCT][:1]
    groups: list[dict] = [{"cols": ids, "grid": [False]}] if ids else []
    rest = [j for j in range(len(views)) if j not in ids]
    used = np.zeros(len(views), int)
    for _ in range(MAX_GROUPS):
        group = _greedy([], rest, codes, used, len(pick))
        if group is None or any(sorted(group) == sorted(g["cols"]) for g in groups):
            break
        groups.append({"cols": group, "grid": [False] * len(group)})
        used[group] += 1
    grids = {j: views[j].grid[pick].astype(np.uint64) for j in rest if views[j].grid is not None}
    if len(grids) > GRID_CANDIDATES:  # wide tables (pooled images): pairs among the most distinct columns only
        keep = sorted(grids, key=lambda j: -distinct(grids[j]))[:GRID_CANDIDATES]
        grids = {j: grids[j] for j in sorted(keep)}
    discrete = [j for j in rest if views[j].kind == "discrete"]
    used_grid = np.zeros(len(views), int)
    for _ in range(MAX_GRID_GROUPS):
        best = None
        for a in grids:
            for b in [None, *grids]:
                if b is not None and b <= a:
                    continue
                pair = [a] if b is None else [a, b]
                acc = np.zeros(len(pick), np.uint64)
                for j in pair:
                    acc = combine(acc, grids[j])
                score = distinct(acc) - 0.2 * used_grid[pair].sum() - 0.01 * len(pair)
                if best is None or score > best[0]:
                    best = (score, pair, acc)
        if best is None:
            break
        _, pair, acc = best
        extra = _greedy_from(acc, discrete, codes, len(pick), limit=3)
        if extra is None:
            break
        fine: dict[str, list] = {"cols": pair + extra, "grid": [True] * len(pair) + [False] * len(extra)}
        if any(sorted(fine["cols"]) == sorted(g["cols"]) for g in groups):
            break
        groups.append(fine)
        used_grid[pair] += 1
    return groups


def _greedy(group, candidates, codes, used, n) -> list[int] | None:
    acc, ratio = np.zeros(n, np.uint64), 0.0
    group = list(group)
    while len(group) < MAX_GROUP_COLUMNS and ratio < TARGET_DISTINCT:
        best = max(
            (j for j in candidates if j not in group),
            key=lambda j: distinct(combine(acc, codes[j])) - 0.1 * used[j],
            default=None,
        )
        if best is None:
            break
        new_ratio = distinct(combine(acc, codes[best]))
        if group and new_ratio < ratio + 0.002:
            break
        group.append(best)
        acc, ratio = combine(acc, codes[best]), new_ratio
    return group if ratio >= MIN_DISTINCT else None


def _greedy_from(acc, candidates, codes, n, limit) -> list[int] | None:
    """Discrete columns added to a grid group until it is distinct enough (None: it never is)."""
    out: list[int] = []
    ratio = distinct(acc)
    while ratio < TARGET_DISTINCT and len(out) < limit:
        best = max(
            (j for j in candidates if j not in out), key=lambda j: distinct(combine(acc, codes[j])), default=None
        )
        if best is None:
            break
        new_ratio = distinct(combine(acc, codes[best]))
        if new_ratio < ratio + 0.002:
            break
        out.append(best)
        acc, ratio = combine(acc, codes[best]), new_ratio
    return out if ratio >= MIN_DISTINCT else None


def collision_rate(keys: np.ndarray) -> float:
    """Pairs of rows with equal code tuples, per pair of rows."""
    _, counts = np.unique(keys, return_counts=True)
    pairs = len(keys) * (len(keys) - 1) / 2
    return float((counts * (counts - 1) / 2).sum() / pairs) if pairs else 0.0


def tuples(table, group: dict) -> np.ndarray:
    return np.column_stack(
        [table.views[j].grid if grid else table.views[j].codes for j, grid in zip(group["cols"], group["grid"])]
    )


def power_of_two(rate: float) -> float:
    """A rate rounded up to a power of two (0 stays 0): no exact count of equal pairs is stored, and rounding
    up only makes chance collisions look likelier (links harder, never easier)."""
    return 0.0 if rate <= 0 else float(2.0 ** math.ceil(math.log2(rate)))


def row_keys(tuples: np.ndarray) -> np.ndarray:
    acc = np.zeros(len(tuples), np.uint64)
    for c in range(tuples.shape[1]):
        acc = combine(acc, tuples[:, c])
    return acc
