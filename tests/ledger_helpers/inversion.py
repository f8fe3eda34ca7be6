"""The inversion attack on a stored sketch, by a writer who holds every key and every other row.

The attacker knows the row key, the stored layout (groups, salt, flip probability), the stored bits and
every row of the registered table but the one attacked, and can code any candidate row exactly as the
table would have coded it. Two attacks:

* **rows** (membership): a pool of the table's rows and as many rows of other people drawn from the same
  population; each candidate is scored by its exact likelihood ratio under the stored bits (a bit another
  row also sets says nothing; any other bit reads 1 with probability 1-p if the candidate is in, p if not).
  A row is recovered when the attacker can claim it: its posterior (the pool's even prior odds times its
  likelihood ratio) is at least 90% and it is a member. The empirical precision of the top-scored tier is
  reported beside it.
* **cells** (attribute): for sampled rows, each column in turn is hidden; the attacker enumerates the
  column's whole domain of codes and scores each value by its prior (its share among the other rows) times
  its likelihood ratio. A cell is recovered when the best value is the true one, its posterior is >= 90%,
  and its prior was below 50% (a value one would have guessed anyway is not recovered by the attack).

Used by tests/test_ledger_inversion.py and benchmarks/identity_corpus.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from privtrain.ledger import overlap as ov
from privtrain.ledger import sketch

PRECISION = 0.9


def _group_codes(views, group, rows=None) -> np.ndarray:
    take = (lambda a: a) if rows is None else (lambda a: a[rows])
    return np.column_stack(
        [take(views[j].grid if grid else views[j].codes) for j, grid in zip(group["cols"], group["grid"])]
    )


def _ratio(bit: np.ndarray, set_by_others: np.ndarray, flip: float) -> np.ndarray:
    """Likelihood ratio in / out of one bit reading for a candidate whose code maps to it."""
    if flip == 0:
        r = np.where(bit, np.inf, 0.0)
    else:
        r = np.where(bit, (1 - flip) / flip, flip / (1 - flip))
    return np.where(set_by_others, 1.0, r)


def rows_attack(members: pd.DataFrame, others: pd.DataFrame, stored: ov.Stored, key: bytes) -> dict:
    """Membership of every member against as many non-members: rows recovered at >= 90% precision."""
    layout = stored.layout
    views_m = ov.read(members, key).views
    views_u = ov.read(pd.concat([members, others], ignore_index=True), key).views  # codes of the others
    n = len(members)
    log_lr = np.zeros(n + len(others))
    for gi, group in enumerate(layout["groups"]):
        hkey = ov.subkey(key, f"sketch/{layout['salt']}/{gi}")
        m = group["m"]
        pos_m = sketch.positions(_group_codes(views_m, group), hkey, m)
        pos_o = sketch.positions(_group_codes(views_u, group, np.arange(n, n + len(others))), hkey, m)
        count = np.bincount(pos_m, minlength=m)
        bits = stored.bits[gi]
        r = np.r_[
            _ratio(bits[pos_m], count[pos_m] >= 2, layout["flip"]),
            _ratio(bits[pos_o], count[pos_o] >= 1, layout["flip"]),
        ]
        with np.errstate(divide="ignore"):
            log_lr += np.log(r)
    member = np.r_[np.ones(n, bool), np.zeros(len(others), bool)]
    posterior = 1 / (1 + np.exp(-log_lr))
    top = log_lr == log_lr.max()
    finite = log_lr[np.isfinite(log_lr)]
    return {
        "rows": n,
        "pool": len(log_lr),
        "recovered": int((member & (posterior >= PRECISION)).sum()),
        "max_ratio": float(np.exp(finite.max())) if len(finite) else math.inf,
        "max_posterior": float(posterior.max()),
        "top_tier": int(top.sum()),
        "top_tier_precision": float(member[top].mean()),
    }


def cells_attack(members: pd.DataFrame, stored: ov.Stored, key: bytes, n_rows: int = 150, seed: int = 0) -> dict:
    """Each column of sampled rows hidden in turn and guessed over its whole domain of values."""
    layout = stored.layout
    views = ov.read(members, key).views
    groups = layout["groups"]
    hkeys = [ov.subkey(key, f"sketch/{layout['salt']}/{gi}") for gi in range(len(groups))]
    tuples = [_group_codes(views, g) for g in groups]
    positions = [sketch.positions(t, hkeys[gi], g["m"]) for gi, (t, g) in enumerate(zip(tuples, groups))]
    counts = [np.bincount(p, minlength=g["m"]) for p, g in zip(positions, groups)]
    rows = np.random.default_rng(seed).choice(len(members), n_rows, replace=False)
    attempts = recovered = 0
    best_posterior = 0.0
    for j, v in enumerate(views):
        member_of = [(gi, g["cols"].index(j)) for gi, g in enumerate(groups) if j in g["cols"]]
        if not member_of:
            continue
        ids, _ = pd.factorize(members.iloc[:, v.position], use_na_sentinel=False)
        freq = np.bincount(ids)
        reps = np.array([np.nonzero(ids == k)[0][0] for k in range(len(freq))])  # a row holding each value
        for r in rows:
            attempts += 1
            truth = ids[r]
            prior = (freq - (np.arange(len(freq)) == truth)) / (len(ids) - 1)  # among the other rows
            with np.errstate(divide="ignore"):
                log_score = np.log(prior)
            for gi, at in member_of:
                coded = v.grid if groups[gi]["grid"][at] else v.codes
                cand = np.repeat(tuples[gi][r : r + 1], len(freq), axis=0)
                cand[:, at] = coded[reps]
                pos = sketch.positions(cand, hkeys[gi], groups[gi]["m"])
                others = counts[gi][pos] - (pos == positions[gi][r])
                with np.errstate(divide="ignore"):
                    log_score = log_score + np.log(_ratio(stored.bits[gi][pos], others >= 1, layout["flip"]))
            finite = np.nan_to_num(log_score, nan=-1e9, posinf=1e9, neginf=-1e9)
            post = np.exp(finite - finite.max())
            post /= post.sum()
            best = int(np.argmax(post))
            if prior[truth] < 0.5:
                best_posterior = max(best_posterior, float(post[truth]))
                recovered += int(best == truth and post[best] >= PRECISION)
    return {"cells": attempts, "recovered": recovered, "max_posterior_below_even_prior": best_posterior}
