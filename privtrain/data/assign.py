"""Which split (and which federated client) a row goes to: a keyed function of that row alone.

With a random permutation of the whole table (scikit-learn's ``train_test_split``), adding or
removing one row shifts which *other* rows land in the training set: neighbouring datasets would
give training sets that differ in about half their rows, and the DP guarantee of training, which is
about one row, would not carry over to the dataset. Here each row draws a uniform number from a
keyed hash of its own canonical content, so adding or removing one row changes the training set by
at most that row. The key is derived from ``seed`` (public randomness: the split is not a DP
mechanism) and the purpose, so the split, each client's share and each client's local evaluation
split are independent of each other.

Identical rows are told apart by their occurrence index: the k-th copy of a row is keyed on (row, k),
so copies spread over both sides (a table with many duplicate rows would otherwise put every copy of a
row on one side, and the held-out rows would not look like the training rows). The multiset of
(row, k) pairs does not depend on the table's order, and adding or removing one copy of a row adds or
removes one pair, so neighbouring datasets still give neighbouring training sets. A row's first copy is
keyed on the row alone, as before.

The split is not stratified: the held-out share is ``test_size`` in expectation.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from privtrain.data.fingerprint import canonical_rows


def uniforms(frame: pd.DataFrame, *, seed: int, purpose: str) -> np.ndarray:
    """One number in [0, 1) per row of ``frame``, a keyed hash of the row's canonical content."""
    if len(frame) == 0:
        return np.zeros(0)
    key = hashlib.sha256(f"privtrain/assign/{purpose}/{int(seed)}".encode()).hexdigest()[:16]
    rows = pd.Series(canonical_rows(frame), dtype=object)
    copy = rows.groupby(rows, sort=False).cumcount().to_numpy()  # 0 for a row's first copy, 1 for the second, ...
    keyed = [row if k == 0 else f"{row}\x1e{k}" for row, k in zip(rows, copy)]
    hashes = pd.util.hash_array(np.array(keyed, dtype=object), hash_key=key, categorize=False)
    return (hashes >> np.uint64(11)).astype(np.float64) / float(2**53)


def held_out(frame: pd.DataFrame, *, seed: int, test_size: float) -> np.ndarray:
    """Boolean mask of the held-out (evaluation) rows."""
    return uniforms(frame, seed=seed, purpose="held-out") < test_size
