"""Split a population's training rows across federated clients: IID, Dirichlet or a natural column.

Every partition is a list of disjoint index arrays, one per client, and is a
pure function of its :class:`PartitionSpec`, the labels and the seed, so the
simulation, every SuperNode of a deployment and the ledger's fingerprint agree
on who holds which rows.

Example:
    >>> import numpy as np
    >>> parts = partition(np.arange(100) % 10, PartitionSpec("iid", num_clients=4, seed=0))
    >>> [len(p) for p in parts]
    [25, 25, 25, 25]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from privtrain.errors import UserError

KINDS = ("iid", "dirichlet", "column")
MIN_ROWS = 2  # one to train on and one to evaluate on, per client
_DIRICHLET_TRIES = 20


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


def validate(spec: PartitionSpec) -> None:
    """Raise :class:`UserError` for a spec that cannot describe a population."""
    if spec.kind not in KINDS:
        raise UserError(f"fl.partition={spec.kind!r} is unknown; choose one of {', '.join(KINDS)}.")
    if spec.kind == "dirichlet" and (spec.alpha is None or not spec.alpha > 0):
        raise UserError(f"fl.alpha={spec.alpha} must be > 0 for fl.partition=dirichlet; use e.g. fl.alpha=0.5 "
                        "(smaller is more skewed).")
    if spec.kind == "column" and not spec.client_column:
        raise UserError("fl.partition=column needs fl.client_column, the column that names each row's client.")
    if spec.kind != "column" and spec.num_clients < 1:
        raise UserError(f"fl.num_clients={spec.num_clients} must be at least 1.")


def partition(labels: np.ndarray, spec: PartitionSpec, client_ids: np.ndarray | None = None) -> list[np.ndarray]:
    """Disjoint, sorted row indices per client.

    Args:
        labels: encoded class labels of the rows to distribute.
        spec: how to distribute them.
        client_ids: for ``kind="column"``, each row's client id.

    Raises:
        UserError: a bad spec, or a client left with fewer than 2 rows.
    """
    validate(spec)
    labels = np.asarray(labels)
    if spec.kind == "column":
        if client_ids is None:
            raise UserError("fl.partition=column needs a CSV or Parquet dataset that has the fl.client_column column.")
        ids = np.asarray(client_ids)
        parts = [np.flatnonzero(ids == c) for c in sorted(set(ids.tolist()), key=str)]
    elif spec.kind == "iid":
        rng = np.random.default_rng(spec.seed)
        parts = [np.sort(p) for p in np.array_split(rng.permutation(len(labels)), spec.num_clients)]
    else:
        parts = _dirichlet(labels, spec)
    _check_sizes(parts, spec)
    return parts


def _dirichlet(labels: np.ndarray, spec: PartitionSpec) -> list[np.ndarray]:
    """Per class, client shares drawn from Dir(alpha); redrawn (deterministically) while a client is too small."""
    parts: list[np.ndarray] = []
    for attempt in range(_DIRICHLET_TRIES):
        rng = np.random.default_rng([spec.seed, attempt])
        buckets: list[list[np.ndarray]] = [[] for _ in range(spec.num_clients)]
        for c in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(spec.num_clients, float(spec.alpha)))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for k, chunk in enumerate(np.split(rows, cuts)):
                buckets[k].append(chunk)
        parts = [np.sort(np.concatenate(b)) if b else np.array([], np.int64) for b in buckets]
        if min(len(p) for p in parts) >= MIN_ROWS:
            return parts
    return parts  # _check_sizes names the empty client


def _check_sizes(parts: list[np.ndarray], spec: PartitionSpec) -> None:
    sizes = [len(p) for p in parts]
    if not parts:
        raise UserError("fl.partition=column: the training rows name no client in fl.client_column.")
    small = [k for k, n in enumerate(sizes) if n < MIN_ROWS]
    if small:
        k = small[0]
        hint = {
            "dirichlet": f"raise fl.alpha (now {spec.alpha}) or lower fl.num_clients (now {spec.num_clients})",
            "iid": f"lower fl.num_clients (now {spec.num_clients}) to at most {sum(sizes) // MIN_ROWS}",
            "column": f"give that client more rows in fl.client_column={spec.client_column!r}, or drop it",
        }[spec.kind]
        raise UserError(f"fl.partition={spec.kind}: client {k} holds {sizes[k]} training row(s) and each client "
                        f"needs at least {MIN_ROWS} (one to train, one to evaluate); {hint}.")


def summary(parts: list[np.ndarray], labels: np.ndarray, n_classes: int) -> dict:
    """Sizes and label histograms per client, plus a skew measure (JSON-ready)."""
    hist = [np.bincount(labels[p], minlength=n_classes).tolist() for p in parts]
    return {"sizes": [len(p) for p in parts], "label_histograms": hist,
            "label_skew_tv": label_skew(parts, labels, n_classes)}


def label_skew(parts: list[np.ndarray], labels: np.ndarray, n_classes: int) -> float:
    """Mean total-variation distance between each client's label distribution and the global one (0 = IID)."""
    overall = np.bincount(labels, minlength=n_classes) / max(len(labels), 1)
    tv = [0.5 * np.abs(np.bincount(labels[p], minlength=n_classes) / len(p) - overall).sum() for p in parts if len(p)]
    return float(np.mean(tv)) if tv else 0.0
