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
CLIENT_SAMPLING = ("poisson", "fixed")
# Federated evaluation asks every client; above this many clients it runs after the last round only.
EVALUATE_EVERY_ROUND_UP_TO = 20


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
    client_sampling: str = "poisson"  # poisson: each client independently with rate q; fixed: m without replacement
    sampling_rate: float | None = None  # q for Poisson sampling; None: clients_per_round / clients (or fraction)
    reuse_ray: bool = True  # simulation: keep one Ray runtime (and its client actors) for the whole process
    reproducible_noise: bool = False  # debugging only: noise and sampling from `seed`, guarantee void
    public_n: int | None = None  # dataset.public_n (or a custom dataset's size): fixes local DP-SGD's q and steps
    regions: tuple[str, ...] = ()  # fl.regions: where clients execute (one for all, or one per client)
    allowed_regions: tuple[str, ...] | None = (
        None  # where the source may be processed (from the ledger): None: anywhere
    )

    def validate(self) -> FlSettings:
        """Raise :class:`UserError` for a setting out of range; returns self."""
        from privtrain.federated.partition import validate as validate_partition

        _choice("fl.engine", self.engine, ENGINES)
        _choice("fl.strategy", self.strategy, STRATEGIES)
        _choice("privacy", self.privacy, PRIVACY)
        _choice("fl.client_sampling", self.client_sampling, CLIENT_SAMPLING)
        if not 0.0 < self.client_test_size < 1.0:
            raise UserError(f"fl.client_test_size={self.client_test_size} must lie in (0, 1).")
        if self.optimizer not in ("sgd", "adam"):
            raise UserError(f"fl.optimizer={self.optimizer!r} is unknown; choose sgd or adam.")
        if self.sampling_rate is not None:
            if not 0.0 < self.sampling_rate <= 1.0:
                raise UserError(
                    f"fl.sampling_rate={self.sampling_rate} must lie in (0, 1]; use e.g. "
                    "fl.sampling_rate=0.1 (or null to use fl.clients_per_round / clients)."
                )
            if self.client_sampling == "fixed":
                raise UserError(
                    "fl.sampling_rate is the Poisson sampling rate; with fl.client_sampling=fixed set "
                    "fl.clients_per_round instead (or fl.sampling_rate=null)."
                )
        validate_partition(self.partition)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlSettings:
        allowed = d.get("allowed_regions")
        return cls(
            **{
                **d,
                "partition": PartitionSpec(**d["partition"]),
                "regions": tuple(d.get("regions") or ()),
                "allowed_regions": None if allowed is None else tuple(allowed),
            }
        )

    @property
    def central(self) -> bool:
        return self.privacy in ("central", "central_local")

    @property
    def local(self) -> bool:
        return self.privacy in ("dp", "central_local")

    def sample_size(self, num_clients: int) -> int:
        """The fixed cohort m (``fl.clients_per_round``, else ``fl.fraction`` of the clients).

        Raises:
            UserError: the cohort cannot be met.
        """
        if self.clients_per_round is not None:
            m = int(self.clients_per_round)
            if m < 1:
                raise UserError(f"fl.clients_per_round={m} must be at least 1.")
            if m > num_clients:
                raise UserError(
                    f"fl.clients_per_round={m} is more than the {num_clients} clients; "
                    f"use fl.clients_per_round<={num_clients} (or add clients with fl.num_clients)."
                )
            return m
        if not 0.0 < self.fraction <= 1.0:
            raise UserError(f"fl.fraction={self.fraction} must lie in (0, 1]; use e.g. fl.fraction=0.5.")
        return max(1, int(round(self.fraction * num_clients)))

    def sample_rate(self, num_clients: int) -> float:
        """Each client's probability of taking part in a round.

        Poisson: ``fl.sampling_rate``, else the expected cohort ``fl.clients_per_round`` (or
        ``fl.fraction`` of the clients) over the clients. Fixed: m / clients.

        Raises:
            UserError: the rate or cohort is out of range.
        """
        if self.client_sampling == "poisson" and self.sampling_rate is not None:
            return float(self.sampling_rate)
        if self.client_sampling == "poisson" and self.clients_per_round is None:
            self.sample_size(num_clients)  # validates fl.fraction
            return float(self.fraction)
        return self.sample_size(num_clients) / num_clients

    def expected_cohort(self, num_clients: int) -> float:
        """The clients of an average round: q·N (Poisson) or m (fixed); DP-FedAvg's fixed denominator."""
        if self.client_sampling == "fixed":
            return float(self.sample_size(num_clients))
        return self.sample_rate(num_clients) * num_clients

    def evaluates_in_round(self, server_round: int, num_clients: int) -> bool:
        """Whether the clients evaluate the global model after ``server_round``."""
        if not self.federated_evaluation:
            return False
        return num_clients <= EVALUATE_EVERY_ROUND_UP_TO or server_round == self.rounds

    def region_of(self, k: int) -> str | None:
        """Client ``k``'s declared region in ``fl.regions`` (None: not declared there)."""
        if not self.regions:
            return None
        return self.regions[0] if len(self.regions) == 1 else self.regions[k] if k < len(self.regions) else None

    @property
    def noise_seed(self) -> int | None:
        """What secret generators are seeded from: None (the OS's entropy), or ``seed`` when debugging."""
        return self.seed if self.reproducible_noise else None


def _choice(name: str, value, options) -> None:
    if value not in options:
        raise UserError(f"{name}={value!r} is unknown; choose one of {', '.join(options)}.")
