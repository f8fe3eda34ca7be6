"""A planned federated run as typed settings: what the ServerApp and ClientApps are handed.

The recipe builds a :class:`Job` after the ledger reservation. It carries typed settings (never
a config object). In simulation it goes to the apps in memory, through their factories, with the
clients' rows held once (:class:`~privtrain.federated.task.ClientRows`: the pool and an index array
per client; the simulation engine puts them in Ray's object store once per run). In a deployment it
goes to them as JSON in the Flower run config, and each process loads its own rows (a SuperNode its
partition, the SuperLink's ServerApp the held-out split).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from privtrain.federated.accounting import LocalPlan
from privtrain.federated.central import CentralPlan
from privtrain.federated.settings import FlSettings
from privtrain.federated.task import ClientData, Population, build_population, load_dataset

if TYPE_CHECKING:
    from privtrain.data import DatasetSpec
    from privtrain.models import ModelSpec


class ClientSource(Protocol):
    """Where a job's clients' rows come from: ``ClientRows`` in memory, or a simulation's object-store handle."""

    def client(self, k: int) -> ClientData: ...


@dataclass(frozen=True)
class Job:
    settings: FlSettings
    dataset: DatasetSpec
    model: ModelSpec
    shape: dict  # n_inputs, n_classes, image_shape
    num_clients: int
    central: CentralPlan | None
    local: LocalPlan | None
    output_dir: str  # where the ServerApp writes history.json and final_model.pt
    train_sizes: tuple[int, ...] = ()  # each client's training rows (public): weights and steps per round
    void: bool = False  # the guarantee is void (reproducible noise, inferred schema): epsilon so far reads inf
    rows: ClientSource | None = field(default=None, repr=False)  # ClientRows, or a handle (simulation)
    test: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _rows: list | None = field(default=None, repr=False, compare=False)  # this process's loaded population

    def client(self, k: int) -> ClientData:
        """Client ``k``'s rows: from memory, or loaded by this process from the configured data."""
        if self.rows is not None:
            return self.rows.client(k)
        return self._population().client(k)

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        if self.test is not None:
            return self.test
        pop = self._population()
        return pop.x_test, pop.y_test

    def steps_per_round(self, k: int) -> int:
        """Optimizer steps of one round of client ``k`` (the server's own count): batches x local epochs
        (under local DP, the plan's, from the client's public size)."""
        if not 0 <= k < len(self.train_sizes):
            return 0
        if self.local is not None:
            return self.local.steps_per_round(k)
        return math.ceil(self.train_sizes[k] / self.settings.batch_size) * self.settings.local_epochs

    def weight(self, k: int) -> float:
        """Client ``k``'s aggregation weight: its rows, or under local DP its public size (the rows it
        holds are not covered by the clients' guarantee)."""
        return float(self.local.sizes[k] if self.local is not None else self.train_sizes[k])

    def with_rows(self, rows: ClientSource) -> Job:
        return replace(self, rows=rows)

    def _population(self) -> Population:
        if self._rows is not None:
            if not self._rows:
                self._rows.append(self._load())
            return self._rows[0]
        return self._load()

    def _load(self) -> Population:
        return build_population(load_dataset(self.dataset, self.settings), self.settings)

    def to_json(self) -> dict:
        return {
            "settings": self.settings.to_dict(),
            "dataset": self.dataset.to_dict(),
            "model": asdict(self.model),
            "shape": self.shape,
            "num_clients": self.num_clients,
            "central": asdict(self.central) if self.central else None,
            "local": asdict(self.local) if self.local else None,
            "output_dir": self.output_dir,
            "train_sizes": list(self.train_sizes),
            "void": self.void,
        }

    def to_text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), default=str)

    @classmethod
    def from_text(cls, text: str, *, cache_rows: bool = False) -> Job:
        """Inverse of :meth:`to_text`; ``cache_rows`` keeps the loaded rows for later messages."""
        from privtrain.data import DatasetSpec
        from privtrain.models import ModelSpec

        d = json.loads(text)
        local = d["local"]
        if local is not None:
            local = LocalPlan(**{**local, "sizes": tuple(local["sizes"])})
        m = d["model"]
        model = ModelSpec(**{**m, "hidden": tuple(m["hidden"]), "channels": tuple(m["channels"])})
        return cls(
            FlSettings.from_dict(d["settings"]),
            DatasetSpec.from_dict(d["dataset"]),
            model,
            d["shape"],
            d["num_clients"],
            CentralPlan(**d["central"]) if d["central"] else None,
            local,
            d["output_dir"],
            tuple(d["train_sizes"]),
            bool(d.get("void", False)),
            _rows=[] if cache_rows else None,
        )


def planned(settings: FlSettings, dataset, model, population: Population, central, local, output_dir) -> Job:
    """The job without rows (a deployment's processes load their own)."""
    from privtrain.federated.task import shape_of

    void = settings.reproducible_noise or population.dataset.schema.inferred
    return Job(
        settings,
        dataset,
        model,
        shape_of(population),
        population.num_clients,
        central,
        local,
        str(Path(output_dir).resolve()),
        tuple(population.train_sizes()),
        bool(void),
    )


def in_memory(settings: FlSettings, dataset, model, population: Population, central, local, output_dir: Path) -> Job:
    """The job with the population's rows in memory (shared, not copied per client)."""
    job = planned(settings, dataset, model, population, central, local, output_dir)
    return replace(job, rows=population.rows(), test=(population.x_test, population.y_test))
