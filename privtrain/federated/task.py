"""Plain PyTorch for the federated apps: the population, one client's data, local training, evaluation.

Nothing here knows Flower. The apps call these functions with plain values, in
the simulation's Ray actors as in a SuperNode's ClientApp process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from privtrain.errors import UserError
from privtrain.federated import partition as part
from privtrain.federated.settings import FlSettings

if TYPE_CHECKING:  # privtrain.data loads lazily (pandas) outside ClientApp processes
    from privtrain import data


@dataclass(frozen=True)
class ClientData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray


@dataclass(frozen=True)
class ClientRows:
    """Every client's rows without a copy per client: the pool once, and index arrays into it."""

    x: np.ndarray
    y: np.ndarray
    train: tuple[np.ndarray, ...]  # pool indices of each client's local training rows
    eval: tuple[np.ndarray, ...]  # ... and of its local evaluation rows

    @property
    def num_clients(self) -> int:
        return len(self.train)

    def client(self, k: int) -> ClientData:
        """Client ``k``'s rows (copied out of the pool only now, when it trains or evaluates).

        Raises:
            UserError: ``k`` is not a client of this population.
        """
        if not 0 <= k < self.num_clients:
            raise UserError(f"partition-id={k} is not a client of this population (0..{self.num_clients - 1}).")
        tr, ev = self.train[k], self.eval[k]
        return ClientData(self.x[tr], self.y[tr], self.x[ev], self.y[ev])


@dataclass(frozen=True)
class Population:
    """A dataset split into the evaluator's held-out rows and disjoint client partitions."""

    dataset: data.Dataset
    spec: part.PartitionSpec
    key: str  # the table's content + its partitioning: the ledger's scope for client-level budgets
    label: str  # e.g. "iid, 10 clients, partition seed 0"
    x_pool: np.ndarray  # the clients' rows (training pool)
    y_pool: np.ndarray
    x_test: np.ndarray  # the server's held-out split (the evaluator's data)
    y_test: np.ndarray
    train_parts: tuple[np.ndarray, ...]  # pool indices of each client's local training rows
    eval_parts: tuple[np.ndarray, ...]  # pool indices of each client's local evaluation rows
    client_test_size: float

    @property
    def num_clients(self) -> int:
        return len(self.train_parts)

    @property
    def n_classes(self) -> int:
        return len(self.dataset.schema.classes)

    @property
    def parts(self) -> list[np.ndarray]:
        """Each client's pool rows (training and evaluation)."""
        return [np.sort(np.concatenate([t, e])) for t, e in zip(self.train_parts, self.eval_parts)]

    def rows(self) -> ClientRows:
        return ClientRows(self.x_pool, self.y_pool, self.train_parts, self.eval_parts)

    def client(self, k: int) -> ClientData:
        return self.rows().client(k)

    def train_sizes(self) -> list[int]:
        return [len(t) for t in self.train_parts]

    def eval_sizes(self) -> list[int]:
        return [len(e) for e in self.eval_parts]


def load_dataset(spec, settings: FlSettings):
    """Load the configured dataset (a :class:`privtrain.data.DatasetSpec`); with ``fl.partition=column``
    the client column is not a feature.

    Raises:
        UserError: a column partition on a dataset without that column.
    """
    from privtrain import data

    column = settings.partition.client_column if settings.partition.kind == "column" else None
    if column is None:
        return data.load(spec)
    if spec.loader not in ("csv", "parquet"):
        raise UserError(
            f"fl.partition=column needs dataset=csv or dataset=parquet with a client column; "
            f"dataset={spec.loader} has none. Use fl.partition=iid or dirichlet."
        )
    if spec.features is None:
        from privtrain.data.files import read_table

        columns = list(read_table(spec.path, data.file_kind(spec)).columns)
        spec = dataclasses.replace(
            spec, features=tuple(c for c in columns if c not in (spec.target, column, spec.id_column, *spec.drop))
        )
    elif column in spec.features:
        raise UserError(f"fl.client_column={column!r} is in dataset.features; a client id is not a feature, drop it.")
    dataset = data.load(spec)
    if column not in dataset.frame.columns:
        raise UserError(f"fl.client_column={column!r} is not a column of {spec.path}.")
    return dataset


def build_population(dataset, settings: FlSettings) -> Population:
    """Held-out split, client partitions and each client's local split: keyed functions of each row.

    Every row's held-out/pool side, client and local train/eval side come from keyed hashes of
    that row alone (:mod:`privtrain.data.assign`, keyed by ``fl.partition_seed``), so one row more
    or less changes one client's rows only. Partition sizes are treated as public.

    Raises:
        UserError: labels outside the declared classes, an empty side of the held-out split, or a
            population in which no client holds a training row.
    """
    from privtrain.data.assign import held_out, uniforms

    spec = settings.partition
    part.validate(spec)
    frame = dataset.frame
    y = encode_labels(dataset)
    x = dataset.schema.transform(frame)
    test = held_out(frame, seed=spec.seed, test_size=settings.test_size)
    if test.all() or not test.any():
        raise UserError(
            f"dataset.test_size={settings.test_size}: the rows leave an empty "
            f"{'training' if test.all() else 'held-out'} split; use more rows or another test_size."
        )
    pool = np.flatnonzero(~test)
    pool_frame = frame.iloc[pool]
    ids = pool_frame[spec.client_column].to_numpy() if spec.kind == "column" else None
    n = part.num_clients(spec, ids)
    client_of = part.assign(
        uniforms(pool_frame, seed=spec.seed, purpose="client"), y[pool], len(dataset.schema.classes), spec, ids
    )
    local_eval = uniforms(pool_frame, seed=spec.seed, purpose="client-eval") < settings.client_test_size
    train_parts = part.group(client_of, n, ~local_eval)
    eval_parts = part.group(client_of, n, local_eval)
    if not any(len(t) for t in train_parts):
        raise UserError(
            f"fl.partition={spec.kind}: no client holds a training row (fl.client_test_size="
            f"{settings.client_test_size}); use more rows or a smaller fl.client_test_size."
        )
    key = part.population_key(
        spec, table=dataset.fingerprint, test_size=settings.test_size, client_test_size=settings.client_test_size
    )
    return Population(
        dataset,
        spec,
        key,
        population_label(spec),
        x[pool],
        y[pool],
        x[test],
        y[test],
        train_parts,
        eval_parts,
        settings.client_test_size,
    )


def encode_labels(dataset) -> np.ndarray:
    """The target encoded by the declared classes.

    Raises:
        UserError: some rows hold a label outside them; the message neither counts those rows nor shows
            their values (both are facts about private data).
    """
    classes = dataset.schema.classes
    index = {c: i for i, c in enumerate(classes)}
    if any(v not in index for v in dataset.frame[dataset.target]):
        raise UserError(
            f"dataset.target={dataset.target!r}: some rows hold a label that is not among the "
            f"{len(classes)} declared classes (values not shown: they are private data); add it to the "
            "target's categories in dataset.schema."
        )
    return dataset.frame[dataset.target].map(index).to_numpy(dtype=np.int64)


def population_label(spec: part.PartitionSpec) -> str:
    """What people read for a population: how its rows were split, by public settings only."""
    if spec.kind == "column":
        return f"users by column {spec.client_column}"  # the same users whatever the partition seed
    kind = f"dirichlet(alpha={spec.alpha:g})" if spec.kind == "dirichlet" else spec.kind
    return f"{kind}, {spec.num_clients} clients, partition seed {spec.seed}"


# --- model, training, evaluation ------------------------------------------------


def build_model(model_spec, population_shape: dict):
    from privtrain import models

    return models.build(
        model_spec,
        n_inputs=population_shape["n_inputs"],
        n_classes=population_shape["n_classes"],
        image_shape=population_shape["image_shape"],
    )


def shape_of(population: Population) -> dict:
    image = population.dataset.image_shape
    return {
        "n_inputs": int(population.x_pool.shape[1]),
        "n_classes": population.n_classes,
        "image_shape": list(image) if image else None,
    }


def local_train(
    model,
    client: ClientData,
    settings: FlSettings,
    *,
    dp=None,
    accountant_state: dict | None = None,
    proximal_mu: float = 0.0,
    seed: int = 0,
):
    """One round of local training; returns :class:`privtrain.training.TrainOutcome`.

    ``seed`` is public (initialisation and the shuffling of non-private training). Under local DP
    the noise and Poisson sampling are secret (the OS's entropy) unless ``fl.reproducible_noise``
    (debugging: derived from ``seed``, guarantee void). The client's accountant state from earlier
    rounds is restored first, so its epsilon keeps accumulating; the server accounts from its own
    message counts, not from this. The optimizer starts fresh every round.
    """
    from privtrain import training

    lr = settings.local_dp_lr if dp is not None else settings.lr
    train_settings = training.TrainSettings(
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        max_physical_batch_size=settings.batch_size,
        optimizer=settings.optimizer,
        lr=lr,
        momentum=settings.momentum,
        ema=0.0,
        grad_sample_mode=settings.grad_sample_mode,
        clipping="flat",
        progress=False,
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
        return training.train(
            model,
            client.x_train,
            client.y_train,
            train_settings,
            dp=dp,
            seed=seed,
            resume=resume,
            desc="client",
            report_epsilon=False,
            reproducible_noise_from=settings.noise_seed,
        )
    finally:
        for h in handles:
            h.remove()


def evaluate(model, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    from privtrain import training

    out = training.evaluate(model, x, y, n_classes)
    return {"accuracy": out["accuracy"], "loss": out["loss"], "n": out["n_test"]}


def round_seed(seed: int, server_round: int, client: int) -> int:
    """A distinct, reproducible seed per (run seed, round, client): public randomness only (shuffling)."""
    return int(np.random.SeedSequence([seed, server_round, client]).generate_state(1)[0] % (2**31 - 1))
