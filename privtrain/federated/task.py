"""Plain PyTorch for the federated apps: the population, one client's data, local training, evaluation.

Nothing here knows Flower. The apps call these functions with plain values, in
the simulation's Ray actors as in a SuperNode's ClientApp process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from privtrain.errors import UserError
from privtrain.federated import partition as part
from privtrain.federated.settings import FlSettings


@dataclass(frozen=True)
class ClientData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray


@dataclass(frozen=True)
class Population:
    """A dataset split into the evaluator's held-out rows and disjoint client partitions."""

    dataset: "data.Dataset"  # noqa: F821 - privtrain.data loads lazily (pandas) outside ClientApp processes
    spec: part.PartitionSpec
    key: str  # the table's content + its partitioning: the ledger's scope for client-level budgets
    label: str  # e.g. "iid, 10 clients, partition seed 0"
    x_pool: np.ndarray  # the clients' rows (training pool), in pool order
    y_pool: np.ndarray
    x_test: np.ndarray  # the server's held-out split (the evaluator's data)
    y_test: np.ndarray
    parts: list[np.ndarray]  # indices into the pool, one array per client
    client_test_size: float

    @property
    def num_clients(self) -> int:
        return len(self.parts)

    @property
    def n_classes(self) -> int:
        return len(self.dataset.schema.classes)

    def client_split(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(train, eval) pool indices of client ``k``: a fixed local split of its partition."""
        rows = np.random.default_rng([self.spec.seed, 7919, k]).permutation(self.parts[k])
        n_eval = min(len(rows) - 1, max(1, round(self.client_test_size * len(rows))))
        return np.sort(rows[n_eval:]), np.sort(rows[:n_eval])

    def client(self, k: int) -> ClientData:
        if not 0 <= k < self.num_clients:
            raise UserError(f"partition-id={k} is not a client of this population (0..{self.num_clients - 1}).")
        tr, ev = self.client_split(k)
        return ClientData(self.x_pool[tr], self.y_pool[tr], self.x_pool[ev], self.y_pool[ev])

    def train_sizes(self) -> list[int]:
        return [len(self.client_split(k)[0]) for k in range(self.num_clients)]


def load_dataset(spec, settings: FlSettings):
    """Load the configured dataset (a :class:`privtrain.data.DatasetSpec`); with ``fl.partition=column``
    the client column is not a feature."""
    from privtrain import data

    column = settings.partition.client_column if settings.partition.kind == "column" else None
    if column is None:
        return data.load(spec)
    if spec.loader not in ("csv", "parquet"):
        raise UserError(f"fl.partition=column needs dataset=csv or dataset=parquet with a client column; "
                        f"dataset={spec.loader} has none. Use fl.partition=iid or dirichlet.")
    if spec.features is None:
        from privtrain.data.files import read_table

        columns = list(read_table(spec.path, data.file_kind(spec)).columns)
        spec = dataclasses.replace(spec, features=tuple(c for c in columns if c not in (spec.target, column,
                                                                                          spec.id_column)))
    elif column in spec.features:
        raise UserError(f"fl.client_column={column!r} is in dataset.features; a client id is not a feature, drop it.")
    dataset = data.load(spec)
    if column not in dataset.frame.columns:
        raise UserError(f"fl.client_column={column!r} is not a column of {spec.path}.")
    return dataset


def build_population(dataset, settings: FlSettings) -> Population:
    """Held-out split and client partitions, both by ``fl.partition_seed``; deterministic.

    Reads the labels (and client ids); partition sizes are treated as public, like the row count.
    """
    from sklearn.model_selection import train_test_split

    spec = settings.partition
    part.validate(spec)
    y = dataset.schema.encode_target(dataset.frame[dataset.target])
    x = dataset.schema.transform(dataset.frame)
    idx = np.arange(len(y))
    counts = np.bincount(y, minlength=len(dataset.schema.classes))
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        pool, test = train_test_split(idx, test_size=settings.test_size, stratify=stratify, random_state=spec.seed)
    except ValueError as exc:
        raise UserError(f"dataset.test_size={settings.test_size}: cannot split {len(y)} rows ({exc}).") from None
    ids = dataset.frame[spec.client_column].to_numpy()[pool] if spec.kind == "column" else None
    parts = part.partition(y[pool], spec, ids)
    identity = {**spec.identity(), "test_size": settings.test_size, "client_test_size": settings.client_test_size}
    key = hashlib.sha256(json.dumps({"table": dataset.fingerprint, "population": identity},
                                    sort_keys=True).encode()).hexdigest()[:16]
    return Population(dataset, spec, key, population_label(spec), x[pool], y[pool], x[test], y[test], parts,
                      settings.client_test_size)


def population_label(spec: part.PartitionSpec) -> str:
    """What people read for a population: how its rows were split, by public settings only."""
    if spec.kind == "column":
        return f"by column {spec.client_column}, partition seed {spec.seed}"
    kind = f"dirichlet(alpha={spec.alpha:g})" if spec.kind == "dirichlet" else spec.kind
    return f"{kind}, {spec.num_clients} clients, partition seed {spec.seed}"


# --- model, training, evaluation ------------------------------------------------


def build_model(model_spec, population_shape: dict):
    from privtrain import models

    return models.build(model_spec, n_inputs=population_shape["n_inputs"],
                        n_classes=population_shape["n_classes"], image_shape=population_shape["image_shape"])


def shape_of(population: Population) -> dict:
    image = population.dataset.image_shape
    return {"n_inputs": int(population.x_pool.shape[1]), "n_classes": population.n_classes,
            "image_shape": list(image) if image else None}


def local_train(model, client: ClientData, settings: FlSettings, *, dp=None, accountant_state: dict | None = None,
                proximal_mu: float = 0.0, seed: int = 0):
    """One round of local training; returns :class:`privtrain.training.TrainOutcome`.

    Under local DP the client's accountant state from earlier rounds is restored first, so
    epsilon keeps accumulating over rounds. The client does not evaluate its epsilon (a PRV call
    costs up to a second per client and round); the server accounts for every client from the step
    counts they report. The optimizer starts fresh every round.
    """
    from privtrain import training

    lr = settings.local_dp_lr if dp is not None else settings.lr
    train_settings = training.TrainSettings(
        epochs=settings.local_epochs, batch_size=settings.batch_size, max_physical_batch_size=settings.batch_size,
        optimizer=settings.optimizer, lr=lr, momentum=settings.momentum, ema=0.0,
        grad_sample_mode=settings.grad_sample_mode, clipping="flat", progress=False,
    )
    resume = None
    if accountant_state is not None:
        fresh = training.make_optimizer(settings.optimizer, model.parameters(), lr, settings.momentum)
        resume = {"optimizer": fresh.state_dict(), "accountant": accountant_state}
    handles = []
    if proximal_mu > 0 and dp is None:  # FedProx: grad += mu * (w - w_global), added to every step's gradient
        for p in model.parameters():
            anchor = p.detach().clone()
            handles.append(p.register_hook(lambda g, p=p, a=anchor: g + proximal_mu * (p.detach() - a)))
    try:
        return training.train(model, client.x_train, client.y_train, train_settings, dp=dp, seed=seed,
                              resume=resume, desc="client", report_epsilon=False)
    finally:
        for h in handles:
            h.remove()


def evaluate(model, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    from privtrain import training

    out = training.evaluate(model, x, y, n_classes)
    return {"accuracy": out["accuracy"], "loss": out["loss"], "n": out["n_test"]}


def round_seed(seed: int, server_round: int, client: int) -> int:
    """A distinct, reproducible seed per (run seed, round, client)."""
    return int(np.random.SeedSequence([seed, server_round, client]).generate_state(1)[0] % (2**31 - 1))

