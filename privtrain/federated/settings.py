"""The federated recipe's settings as plain values, read once from the composed config.

Both engines and both apps build their view of a run from the same plain
config dict, through :func:`from_config`, so a SuperNode process sees exactly
what the recipe planned with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from privtrain.errors import UserError
from privtrain.federated.partition import PartitionSpec

ENGINES = ("simulation", "deployment")
STRATEGIES = ("fedavg", "fedprox", "fedadam")
PRIVACY = ("none", "central", "dp", "central_local")


@dataclass(frozen=True)
class FlSettings:
    engine: str
    partition: PartitionSpec
    client_test_size: float
    test_size: float
    rounds: int
    clients_per_round: int | None
    fraction: float
    round_timeout: float
    strategy: str
    proximal_mu: float
    server_lr: float
    server_beta_1: float
    server_beta_2: float
    server_tau: float
    local_epochs: int
    batch_size: int
    optimizer: str
    lr: float
    local_dp_lr: float  # the client optimizer's learning rate under local DP-SGD
    momentum: float
    grad_sample_mode: str
    privacy: str
    seed: int
    progress: bool
    num_cpus: float
    cpus_per_client: float
    superlink: str | None
    startup_timeout: float

    @property
    def central(self) -> bool:
        return self.privacy in ("central", "central_local")

    @property
    def local(self) -> bool:
        return self.privacy in ("dp", "central_local")

    def sample_size(self, num_clients: int) -> int:
        """Clients per round; raises :class:`UserError` when it cannot be met."""
        if self.clients_per_round is not None:
            m = int(self.clients_per_round)
            if m < 1:
                raise UserError(f"fl.clients_per_round={m} must be at least 1.")
            if m > num_clients:
                raise UserError(f"fl.clients_per_round={m} is more than the {num_clients} clients; "
                                f"use fl.clients_per_round<={num_clients} (or add clients with fl.num_clients).")
            return m
        if not 0.0 < self.fraction <= 1.0:
            raise UserError(f"fl.fraction={self.fraction} must lie in (0, 1]; use e.g. fl.fraction=0.5.")
        return max(1, int(round(self.fraction * num_clients)))


def from_config(cfg: dict) -> FlSettings:
    """Validate and convert the ``fl``, ``recipe`` and ``privacy.name`` parts of a plain config dict."""
    fl = cfg["fl"]
    _choice("fl.engine", fl["engine"], ENGINES)
    _choice("fl.strategy", fl["strategy"], STRATEGIES)
    _choice("privacy", cfg["privacy"]["name"], PRIVACY)
    _positive("fl.rounds", fl["rounds"], integer=True)
    _positive("fl.local_epochs", fl["local_epochs"], integer=True)
    _positive("fl.batch_size", fl["batch_size"], integer=True)
    _positive("fl.lr", fl["lr"])
    _positive("fl.local_dp_lr", fl["local_dp_lr"])
    _positive("fl.round_timeout", fl["round_timeout"])
    if not 0.0 < float(fl["client_test_size"]) < 1.0:
        raise UserError(f"fl.client_test_size={fl['client_test_size']} must lie in (0, 1).")
    if fl["optimizer"] not in ("sgd", "adam"):
        raise UserError(f"fl.optimizer={fl['optimizer']!r} is unknown; choose sgd or adam.")
    sim, dep = fl["simulation"], fl["deployment"]
    num_cpus = sim["num_cpus"] if sim["num_cpus"] is not None else (os.cpu_count() or 1)  # null: every core
    _positive("fl.simulation.num_cpus", num_cpus)
    _positive("fl.simulation.cpus_per_client", sim["cpus_per_client"])
    spec = PartitionSpec(str(fl["partition"]), int(fl["num_clients"]),
                         None if fl["alpha"] is None else float(fl["alpha"]),
                         fl["client_column"], int(fl["partition_seed"]))
    return FlSettings(
        engine=fl["engine"], partition=spec, client_test_size=float(fl["client_test_size"]),
        test_size=float(cfg["dataset"]["test_size"]), rounds=int(fl["rounds"]),
        clients_per_round=None if fl["clients_per_round"] is None else int(fl["clients_per_round"]),
        fraction=float(fl["fraction"]), round_timeout=float(fl["round_timeout"]), strategy=fl["strategy"],
        proximal_mu=float(fl["proximal_mu"]), server_lr=float(fl["server_lr"]),
        server_beta_1=float(fl["server_beta_1"]), server_beta_2=float(fl["server_beta_2"]),
        server_tau=float(fl["server_tau"]), local_epochs=int(fl["local_epochs"]), batch_size=int(fl["batch_size"]),
        optimizer=fl["optimizer"], lr=float(fl["lr"]), local_dp_lr=float(fl["local_dp_lr"]), momentum=float(fl["momentum"]),
        grad_sample_mode=fl["grad_sample_mode"], privacy=cfg["privacy"]["name"], seed=int(cfg["seed"]),
        progress=bool(cfg["recipe"]["progress"]), num_cpus=float(num_cpus),
        cpus_per_client=float(sim["cpus_per_client"]), superlink=dep["superlink"],
        startup_timeout=float(dep["startup_timeout"]),
    )


def _choice(name: str, value, options) -> None:
    if value not in options:
        raise UserError(f"{name}={value!r} is unknown; choose one of {', '.join(options)}.")


def _positive(name: str, value, integer: bool = False) -> None:
    ok = value is not None and float(value) > 0 and (not integer or float(value) == int(value))
    if not ok:
        raise UserError(f"{name}={value} must be a positive {'integer' if integer else 'number'}.")
