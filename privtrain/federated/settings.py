"""The federated recipe's settings as plain values (built by the config layer, checked here).

Both engines and both apps see a run through the same :class:`FlSettings`, carried by the
:class:`~privtrain.federated.job.Job`, so a SuperNode process sees exactly what the recipe
planned with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    federated_evaluation: bool
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

    def validate(self) -> "FlSettings":
        """Raise :class:`UserError` for a setting out of range; returns self."""
        from privtrain.federated.partition import validate as validate_partition

        _choice("fl.engine", self.engine, ENGINES)
        _choice("fl.strategy", self.strategy, STRATEGIES)
        _choice("privacy", self.privacy, PRIVACY)
        if not 0.0 < self.client_test_size < 1.0:
            raise UserError(f"fl.client_test_size={self.client_test_size} must lie in (0, 1).")
        if self.optimizer not in ("sgd", "adam"):
            raise UserError(f"fl.optimizer={self.optimizer!r} is unknown; choose sgd or adam.")
        validate_partition(self.partition)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FlSettings":
        return cls(**{**d, "partition": PartitionSpec(**d["partition"])})

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


def _choice(name: str, value, options) -> None:
    if value not in options:
        raise UserError(f"{name}={value!r} is unknown; choose one of {', '.join(options)}.")


