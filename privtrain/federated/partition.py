"""Which client holds which training row: a keyed function of each row alone (IID, Dirichlet, or a column).

A row's client depends only on that row (a keyed hash of its content, see
:mod:`privtrain.data.assign`) and on public settings, never on the other rows, so adding or
removing one row changes one client's rows and no other's: neighbouring datasets give
neighbouring populations, which the DP guarantees need.

- ``iid``: client ``floor(u * N)`` for the row's uniform ``u``.
- ``dirichlet``: per class ``c``, client shares ``p_c ~ Dir(alpha)`` drawn from a public generator
  seeded by ``fl.partition_seed``; a row of class ``c`` goes to the client where the CDF of ``p_c``
  first exceeds ``u`` (label skew: smaller alpha, more skew).
- ``column``: by the value of ``fl.client_column`` (one client per distinct value).

Partition sizes are therefore data dependent; they are treated as public, like a dataset's row
count (docs/federated.md). A client may hold no rows; it then trains nothing.

Example:
    >>> import numpy as np
    >>> u = np.array([0.05, 0.3, 0.55, 0.8])
    >>> assign(u, np.zeros(4, int), 1, PartitionSpec("iid", num_clients=4)).tolist()
    [0, 1, 2, 3]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from privtrain.errors import UserError

KINDS = ("iid", "dirichlet", "column")


@dataclass(frozen=True)
class PartitionSpec:
    """What ``fl.partition``, ``fl.num_clients``, ``fl.alpha``, ``fl.client_column`` and ``fl.partition_seed`` say."""

    kind: str
    num_clients: int
    alpha: float | None = None
    client_column: str | None = None
    seed: int = 0

    def identity(self) -> dict:
        """The public facts that define the population (folded into its fingerprint)."""
        out = asdict(self)
        if self.kind != "dirichlet":
            out.pop("alpha")
        if self.kind != "column":
            out.pop("client_column")
        else:
            out.pop("num_clients")  # the column decides
        return out


def population_key(spec: PartitionSpec, *, table: str, test_size: float, client_test_size: float) -> str:
    """The ledger's scope for client-level budgets (the ledger keys them under the run's source already).

    - ``column``: the clients are people (or sites) named by the column, so the population is the column
      itself, by its name up to case and punctuation. Which of their rows a run holds out or evaluates locally
      (``fl.partition_seed``, ``dataset.test_size``, ``fl.client_test_size``) and which version of the table
      it reads (rows added or dropped) do not make new people, so none of them is in the key: a user's
      budget follows the user. A column renamed to another word is another population; a governed project
      declares its sources (docs/federated.md).
    - ``iid`` and ``dirichlet``: the clients are groups the partitioning itself makes out of this table's rows,
      so the key is the table and every setting that shapes the groups.
    """
    if spec.kind == "column":
        identity: dict = {
            "kind": "column",
            "users": "".join(ch for ch in str(spec.client_column).casefold() if ch.isalnum()),
        }
    else:
        identity = {
            "table": table,
            "population": {**spec.identity(), "test_size": test_size, "client_test_size": client_test_size},
        }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def validate(spec: PartitionSpec) -> None:
    """Raise :class:`UserError` for a spec that cannot describe a population."""
    if spec.kind not in KINDS:
        raise UserError(f"fl.partition={spec.kind!r} is unknown; choose one of {', '.join(KINDS)}.")
    if spec.kind == "dirichlet" and (spec.alpha is None or not spec.alpha > 0):
        raise UserError(
            f"fl.alpha={spec.alpha} must be > 0 for fl.partition=dirichlet; use e.g. fl.alpha=0.5 "
            "(smaller is more skewed)."
        )
    if spec.kind == "column" and not spec.client_column:
        raise UserError("fl.partition=column needs fl.client_column, the column that names each row's client.")
    if spec.kind != "column" and spec.num_clients < 1:
        raise UserError(f"fl.num_clients={spec.num_clients} must be at least 1.")


def assign(
    u: np.ndarray, labels: np.ndarray, n_classes: int, spec: PartitionSpec, client_ids: np.ndarray | None = None
) -> np.ndarray:
    """Each row's client index.

    Args:
        u: each row's keyed uniform in [0, 1) (``privtrain.data.assign.uniforms(..., purpose="client")``).
        labels: encoded class labels (Dirichlet only), in ``range(n_classes)``.
        n_classes: the number of declared classes (public; fixes the Dirichlet draws).
        spec: how to distribute the rows.
        client_ids: for ``kind="column"``, each row's value of the client column.

    Returns:
        An int64 array: the client of each row, in ``range(num_clients(spec, client_ids))``.

    Raises:
        UserError: a bad spec, or a column partition without its column.
    """
    validate(spec)
    u = np.asarray(u, dtype=np.float64)
    if spec.kind == "column":
        if client_ids is None:
            raise UserError("fl.partition=column needs a CSV or Parquet dataset that has the fl.client_column column.")
        keys = np.array([str(v) for v in client_ids], dtype=object)
        _, index = np.unique(keys, return_inverse=True)  # clients in sorted order of their (private) ids
        return index.astype(np.int64).reshape(-1)
    n = spec.num_clients
    if spec.kind == "iid":
        return np.minimum((u * n).astype(np.int64), n - 1)
    cdf = np.cumsum(dirichlet_shares(spec, n_classes), axis=1)
    cdf[:, -1] = 1.0  # no row falls past the last client through rounding
    labels = np.asarray(labels, dtype=np.int64)
    out = np.empty(len(u), dtype=np.int64)
    for c in range(n_classes):
        rows = labels == c
        out[rows] = np.searchsorted(cdf[c], u[rows], side="right")
    return np.minimum(out, n - 1)


def dirichlet_shares(spec: PartitionSpec, n_classes: int) -> np.ndarray:
    """Per class, each client's share: ``Dir(alpha)`` from a public generator seeded by the partition seed."""
    if spec.alpha is None:  # validated with the spec; checked again for the type
        raise UserError("fl.partition=dirichlet needs fl.alpha (e.g. fl.alpha=0.5).")
    rng = np.random.default_rng([int(spec.seed), 0xD1])
    shares = rng.dirichlet(np.full(spec.num_clients, float(spec.alpha)), size=n_classes)
    shares = np.nan_to_num(shares, nan=0.0)  # a tiny alpha can underflow; fall back below
    empty = shares.sum(axis=1) <= 0
    shares[empty] = 1.0
    return shares / shares.sum(axis=1, keepdims=True)


def num_clients(spec: PartitionSpec, client_ids: np.ndarray | None = None) -> int:
    """How many clients the population has: ``fl.num_clients``, or the distinct values of the client column."""
    if spec.kind != "column":
        return int(spec.num_clients)
    return len({str(v) for v in client_ids}) if client_ids is not None else 0


def group(client_of: np.ndarray, n: int, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each client ``k < n``: the sorted indices of ``rows`` (a boolean mask) that belong to it."""
    index = np.flatnonzero(rows)
    owners = client_of[index]
    order = np.argsort(owners, kind="stable")
    bounds = np.searchsorted(owners[order], np.arange(n + 1))
    return tuple(index[order[bounds[k] : bounds[k + 1]]] for k in range(n))


def summary(train_sizes: list[int], eval_sizes: list[int]) -> dict:
    """Sizes only (public by declaration): no label histograms or skew, which would be statistics of private rows."""
    sizes = [a + b for a, b in zip(train_sizes, eval_sizes)]
    return {
        "clients": len(sizes),
        "sizes": sizes,
        "train_sizes": list(train_sizes),
        "eval_sizes": list(eval_sizes),
        "clients_without_training_rows": sum(1 for s in train_sizes if s == 0),
        "note": "partition sizes are treated as public, like a dataset's row count; nothing else about the "
        "clients' rows is reported",
    }
