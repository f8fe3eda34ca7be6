"""Mapping a new table's columns onto a stored table's codes: which column is which, and how to code it.

A new column is matched to a stored one by content (:func:`correspond`: a Hungarian assignment on name-free
descriptors; equal names or positions only break ties), then coded as the stored column was:
:func:`level_codings` for a discrete column (grid index, or the stored code of the cell holding each value's
mid cumulative share, in ascending, descending or frequency order: whichever reproduces the stored profile),
:func:`map_continuous` for quantile bins (with probes near bin edges) and :func:`map_grid` for grid indices.
The codes themselves are defined in :mod:`privtrain.ledger.columns`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privtrain.ledger.columns import BINS, DISCRETE_MAX, NULL, OTHER, RARE_SHARE, View, anchor_level

Z_PROBE = 1.5  # a continuous cell within this many sampling errors of a bin edge probes both bins
GRAIN_FLOOR = 0.2  # a gridded source column matches a new column whose grain is at least this share of its own
MAX_COST = 0.6  # columns farther apart than this (see _cost) do not correspond
SHORTLIST = 4  # stored discrete columns per new one whose full cost is computed (nearest by sorted shares)


def _present(array: np.ndarray | None, what: str) -> np.ndarray:
    """``array``, which the view's kind guarantees (a discrete view has level shares, a continuous one its
    quantiles, a gridded one its median index).

    Raises:
        ValueError: the array is missing (a view of the wrong kind was passed: a bug).
    """
    if array is None:
        raise ValueError(f"this column view has no {what} (a view of the wrong kind)")
    return array


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
    shares, cells = _present(new.level_shares, "level shares"), desc["cells"]
    widths = np.diff(np.r_[0.0, [c[0] for c in cells]])
    stored = {c[1]: w for c, w in zip(cells, widths) if c[1] is not None}
    candidates = []
    if desc.get("grid") and new.step > 0:
        values = _present(new.level_values, "level values")  # a grid step implies numeric levels
        flipped = {"min": "max", "max": "min"}.get(desc["grid"], "mode")
        for sign, rule in ((1, desc["grid"]), (-1, flipped)):
            anchor = values[anchor_level(rule, shares)]
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
    level_of_row = _present(new.level_of_row, "level of each row")
    return np.where(level_of_row >= 0, level_code[np.maximum(level_of_row, 0)], NULL).astype(np.int64)


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

    u = _present(new.quantile, "quantiles")
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
    n = int((_present(new.mid, "median grid index") != NULL).sum())
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
    mid = _present(new.mid, "median grid index")  # set with every grid
    valid = mid != NULL
    return [np.where(valid, mid + k, NULL) for k in sorted(range(-reach, reach + 1), key=abs)]


# --- correspondence: which new column is which stored column ------------------------------------------


def _cost(new: View, desc: dict) -> float:
    """How unlike a stored column the new column is (inf: cannot be the same column)."""
    kinds = {"discrete": "d", "continuous": "c", "exact": "x"}
    if kinds[new.kind] != desc["k"]:
        return math.inf
    cost = abs(new.descriptor["null"] - desc["null"])
    if desc["k"] == "d":
        stored_levels = sum(1 for c in desc["cells"] if c[1] is not None)
        if int((_present(new.level_shares, "level shares") >= 2 * RARE_SHARE).sum()) > stored_levels + 1:
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


def _continuous_costs(cost: np.ndarray, new: list[View], known: list[dict]) -> None:
    """:func:`_cost` of every continuous pair at once (wide tables have thousands of pairs)."""
    jn = [j for j, v in enumerate(new) if v.kind == "continuous"]
    kn = [k for k, d in enumerate(known) if d["k"] == "c"]
    if not jn or not kn:
        return
    shape_n = np.array([new[j].descriptor["shape"] for j in jn])
    shape_k = np.array([known[k]["shape"] for k in kn])
    grain_n = np.array([new[j].descriptor["grain"] for j in jn])[:, None]
    grain_k = np.array([known[k]["grain"] for k in kn])[None, :]
    c = (
        np.abs(
            np.array([new[j].descriptor["null"] for j in jn])[:, None]
            - np.array([known[k]["null"] for k in kn])[None, :]
        )
        + np.abs(shape_n[:, None, :] - shape_k[None, :, :]).mean(axis=2) / 2
    )
    names_n = np.array([new[j].descriptor["name"] for j in jn], dtype=object)[:, None]
    names_k = np.array([known[k]["name"] for k in kn], dtype=object)[None, :]
    c -= 0.2 * ((names_n == names_k) & (names_n != ""))
    c -= 0.05 * (np.array([new[j].position for j in jn])[:, None] == np.array([known[k]["pos"] for k in kn])[None, :])
    ok = (grain_k == 0) | ((grain_n > 0) & (grain_n >= GRAIN_FLOOR * grain_k))  # grain_compatible, elementwise
    cost[np.ix_(jn, kn)] = np.where(ok, c, math.inf)


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
            keep |= {
                i
                for i, k in enumerate(disc_known)
                if known[k]["pos"] == new[j].position or known[k]["name"] == new[j].descriptor["name"]
            }
            for i in keep:
                cost[j, disc_known[i]] = _cost(new[j], known[disc_known[i]])
    _continuous_costs(cost, new, known)
    for j, v in enumerate(new):
        if v.kind == "exact":
            for k, d in enumerate(known):
                cost[j, k] = _cost(v, d)
    rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
    return {int(k): int(j) for j, k in zip(rows, cols) if cost[j, k] < MAX_COST}
