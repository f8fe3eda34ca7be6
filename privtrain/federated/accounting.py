"""Privacy accounting for federated runs: client-level central DP and example-level local DP.

Central DP-FedAvg (unit ``client``). Each round the server clips every sampled
client's model update to ``clipping_norm``, averages the ``m`` updates with equal
weights and adds Gaussian noise of std ``noise_multiplier * clipping_norm / m``
(Flower's ``DifferentialPrivacy*FixedClipping`` wrappers). One round is a
Gaussian mechanism with that noise multiplier. Flower samples a fixed number of
clients *without replacement*, not Poisson, so no amplification by sampling is
claimed (q = 1): ``SelfComposedDpEvent(GaussianDpEvent(sigma), rounds)``. This
is the "no-amplification, add-or-remove-one" model of Flower's own accountant.

Local DP (unit ``example``). Each client runs DP-SGD with Opacus (Poisson
sampling at rate ``1/ceil(n_k/batch)``) and keeps its accountant across rounds.
Partitions are disjoint, so an example's loss is its own client's: the
population's epsilon is the maximum over clients.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

from privtrain.errors import UserError

# dp-accounting (and the scipy it pulls in) load on first use: ClientApp processes that only
# unpickle a plan, under central DP or none, never pay for them.

CLIPPING_SIDES = ("server", "client")


# --- central, client-level ----------------------------------------------------


def central_event(noise_multiplier: float, releases: int):
    """``releases`` noisy aggregates, each a Gaussian mechanism without sampling amplification."""
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(float(noise_multiplier)), int(releases))


def gaussian_epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """Exact epsilon of ``releases`` composed Gaussian mechanisms (analytic Gaussian, Balle & Wang 2018).

    ``releases`` Gaussians of multiplier sigma compose exactly into one of multiplier sigma/sqrt(releases).
    """
    from scipy.stats import norm

    if releases <= 0:
        return 0.0
    mu = math.sqrt(releases) / noise_multiplier

    def delta_of(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2)

    lo, hi = 0.0, 1.0
    while delta_of(hi) > delta:
        hi *= 2
        if hi > 1e6:
            return math.inf
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


def calibrate_central(target_epsilon: float, delta: float, releases: int) -> float:
    """The smallest noise multiplier whose ``releases``-round epsilon is at most ``target_epsilon``."""
    lo, hi = 1e-3, 1.0
    while gaussian_epsilon(hi, releases, delta) > target_epsilon:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gaussian_epsilon(mid, releases, delta) > target_epsilon else (lo, mid)
    return hi


@dataclass(frozen=True)
class CentralPlan:
    """Client-level DP-FedAvg as planned before round 1."""

    noise_multiplier: float
    clipping_norm: float
    clipping_side: str
    rounds: int
    clients_per_round: int
    num_clients: int
    delta: float
    epsilon: float  # planned, tight (PLD) over all rounds

    @property
    def events(self) -> tuple:
        return (central_event(self.noise_multiplier, self.rounds),)


def plan_central(*, target_epsilon: float | None, noise_multiplier: float | None, delta: float | None,
                 clipping_norm: float, clipping_side: str, rounds: int, clients_per_round: int,
                 num_clients: int) -> CentralPlan:
    """Plan central DP. Exactly one of ``target_epsilon`` and ``noise_multiplier`` is set.

    Raises:
        UserError: a field is out of range.
    """
    if clipping_side not in CLIPPING_SIDES:
        raise UserError(f"privacy.clipping_side={clipping_side!r} is unknown; choose server or client.")
    if clipping_norm is None or not clipping_norm > 0:
        raise UserError(f"privacy.clipping_norm={clipping_norm} must be > 0 (the L2 bound on one client's update).")
    delta = client_delta(delta, num_clients)
    if (target_epsilon is None) == (noise_multiplier is None):
        raise UserError("privacy: set exactly one of privacy.target_epsilon and privacy.noise_multiplier "
                        "(e.g. privacy.target_epsilon=3, or privacy.target_epsilon=null privacy.noise_multiplier=1.1).")
    if target_epsilon is not None:
        if not target_epsilon > 0:
            raise UserError(f"privacy.target_epsilon={target_epsilon} must be > 0; use e.g. privacy.target_epsilon=3.")
        sigma = calibrate_central(float(target_epsilon), delta, rounds)
    else:
        if not noise_multiplier > 0:
            raise UserError(f"privacy.noise_multiplier={noise_multiplier} must be > 0.")
        sigma = float(noise_multiplier)
    from privtrain.privacy.events import epsilon_pld

    eps = epsilon_pld([central_event(sigma, rounds)], delta)
    return CentralPlan(sigma, float(clipping_norm), clipping_side, int(rounds), int(clients_per_round),
                       int(num_clients), delta, eps)


def client_delta(delta: float | None, num_clients: int) -> float:
    """Client-level delta: given, or 1e-5 (lower for large federations); always below 1/num_clients."""
    from privtrain.privacy import dp_sgd as dp_plan

    if delta is None:
        return dp_plan.default_delta(num_clients)
    delta = float(delta)
    if not 0.0 < delta < 1.0 / num_clients:
        raise UserError(f"privacy.delta={delta:g} must lie in (0, 1/clients) = (0, {1.0 / num_clients:.2e}) for "
                        f"{num_clients} clients; use e.g. privacy.delta={dp_plan.default_delta(num_clients):.0e}.")
    return delta


# --- local, example-level -----------------------------------------------------


@dataclass(frozen=True)
class LocalPlan:
    """Local DP-SGD in every client, as planned: one noise multiplier for all clients."""

    noise_multiplier: float
    max_grad_norm: float
    accountant: str
    delta: float
    batch_size: int
    local_epochs: int
    rounds: int
    sizes: tuple[int, ...]  # training rows per client (treated as public, like n in dp_sgd)
    epsilon: float  # planned: the largest client's epsilon if it trains in every round

    def batches(self, k: int) -> int:
        return math.ceil(self.sizes[k] / self.batch_size)

    def sample_rate(self, k: int) -> float:
        return 1.0 / self.batches(k)

    def steps_per_round(self, k: int) -> int:
        return self.batches(k) * self.local_epochs

    def client_dp(self, k: int):
        """What :func:`privtrain.training.train` needs for one round of client ``k`` (a ``DpSgdPlan``)."""
        from privtrain.privacy import dp_sgd as dp_plan

        return dp_plan.DpSgdPlan(self.noise_multiplier, self.sample_rate(k), self.steps_per_round(k), self.delta,
                                 self.max_grad_norm, self.accountant, math.nan)

    def client_epsilon(self, k: int, steps: int) -> float:
        return _epsilon_of(self.noise_multiplier, self.sample_rate(k), steps, self.delta, self.accountant)

    def client_event(self, k: int, steps: int):
        from privtrain.privacy.events import dp_sgd_event

        return dp_sgd_event(sample_rate=self.sample_rate(k), noise_multiplier=self.noise_multiplier, steps=steps)

    def epsilons(self, steps: dict[int, int]) -> dict[int, float]:
        """Each client's epsilon, given its total steps (clients of equal size share one accountant call)."""
        return {k: self.client_epsilon(k, s) for k, s in steps.items() if s > 0}

    def worst(self, steps: dict[int, int]) -> tuple[int, float]:
        """(client, epsilon) of the client with the largest epsilon, given each client's total steps."""
        eps = self.epsilons(steps)
        if not eps:
            return -1, 0.0
        k = max(eps, key=eps.__getitem__)
        return k, eps[k]

    @property
    def planned_steps(self) -> dict[int, int]:
        return {k: self.steps_per_round(k) * self.rounds for k in range(len(self.sizes))}

    @property
    def events(self) -> tuple:
        k, _ = self.worst(self.planned_steps)
        return (self.client_event(k, self.planned_steps[k]),)


def plan_local(*, sizes: list[int], batch_size: int, local_epochs: int, rounds: int, target_epsilon: float | None,
               noise_multiplier: float | None, delta: float | None, max_grad_norm: float | None, accountant: str,
               field: str = "privacy") -> LocalPlan:
    """Plan local DP-SGD so that no client exceeds ``target_epsilon`` even if it trains every round.

    Raises:
        UserError: a field is out of range.
    """
    from privtrain.privacy import dp_sgd as dp_plan

    if accountant not in dp_plan.ACCOUNTANTS:
        raise UserError(f"{field}.accountant={accountant!r} is unknown; choose one of {', '.join(dp_plan.ACCOUNTANTS)}.")
    if max_grad_norm is None or not max_grad_norm > 0:
        raise UserError(f"{field}.max_grad_norm={max_grad_norm} must be > 0.")
    delta = dp_plan.resolve_delta(delta, sum(sizes))
    if (target_epsilon is None) == (noise_multiplier is None):
        raise UserError(f"{field}: set exactly one of {field}.target_epsilon and {field}.noise_multiplier.")
    draft = LocalPlan(1.0, float(max_grad_norm), accountant, delta, batch_size, local_epochs, rounds,
                      tuple(int(s) for s in sizes), math.nan)
    shapes = {(draft.sample_rate(k), draft.planned_steps[k]) for k in range(len(sizes))}
    if target_epsilon is not None:
        if not target_epsilon > 0:
            raise UserError(f"{field}.target_epsilon={target_epsilon} must be > 0; use e.g. {field}.target_epsilon=3.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma = max(dp_plan.calibrate(float(target_epsilon), delta, q, steps, accountant) for q, steps in shapes)
    else:
        if not noise_multiplier > 0:
            raise UserError(f"{field}.noise_multiplier={noise_multiplier} must be > 0.")
        sigma = float(noise_multiplier)
    plan = LocalPlan(sigma, float(max_grad_norm), accountant, delta, batch_size, local_epochs, rounds,
                     tuple(int(s) for s in sizes), math.nan)
    _, eps = plan.worst(plan.planned_steps)
    return LocalPlan(sigma, float(max_grad_norm), accountant, delta, batch_size, local_epochs, rounds,
                     tuple(int(s) for s in sizes), eps)


@functools.lru_cache(maxsize=4096)
def _epsilon_of(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """One accountant call per distinct (sigma, q, steps, delta): the server asks every round for every client."""
    from privtrain.privacy import dp_sgd as dp_plan

    return dp_plan.epsilon_of(noise_multiplier, sample_rate, steps, delta, accountant)
