"""Central DP-FedAvg's accounting (unit ``client``), and what it bounds toward one example.

DP-FedAvg (McMahan, Ramage, Talwar & Zhang 2018), as the ServerApp runs it
(:mod:`privtrain.federated.aggregation`): each round every client is included independently with
probability ``q`` (Poisson sampling, a secret generator); each included client's update is clipped
to L2 norm ``C``; the clipped updates are summed, Gaussian noise ``N(0, sigma^2 C^2)`` is added,
and the sum is divided by the *fixed* expected cohort ``qN``. Every round is released.

Adjacency is stated, as it must be (Lebeda et al. 2024, "Avoiding pitfalls for privacy accounting of
subsampled mechanisms under composition"):

- **Poisson, client level**: add/remove one client. The noisy sum's sensitivity is ``C``; the round
  is ``PoissonSampledDpEvent(q, GaussianDpEvent(sigma))`` (amplification is earned: the sampling is
  Poisson and the denominator does not depend on who was sampled).
- **Fixed cohort** (``fl.client_sampling=fixed``, m clients without replacement, denominator m): a
  public cohort size makes the relation replace-one, whose sensitivity is ``2C`` against noise
  ``sigma C``: each round is ``GaussianDpEvent(sigma / 2)``, with no amplification.
- **Example level** (what the source's example budget is charged): one example changes only its own
  client's clipped update, by at most ``2C``, and that client's participation is the same
  Bernoulli(q) in both neighbouring datasets. By the advanced joint convexity of the hockey-stick
  divergence (Balle, Barthe & Gaboardi 2018, Thm 2), the pair ``(1-q)N(0) + qN(u)`` vs
  ``(1-q)N(0) + qN(u')`` with ``|u - u'| <= 2C`` has, for every eps',
  ``delta(eps') <= q * delta_{G(sigma/2)}(log(1 + (e^eps' - 1) / q))``: the remove-direction privacy
  profile of the Poisson-subsampled Gaussian with multiplier ``sigma/2`` (Zhu, Dong & Wang 2022),
  which dp-accounting's PLD of ``PoissonSampledDpEvent(q, GaussianDpEvent(sigma/2))`` dominates. The
  pair is symmetric, so both directions are covered; rounds compose adaptively (dominating pairs).
  The fixed cohort gives ``GaussianDpEvent(sigma/2)`` per round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from privtrain.errors import UserError

CLIPPING_SIDES = ("server", "client")
SAMPLING = ("poisson", "fixed")
# PLD's value discretisation while searching sigma and for the per-round figure: 10x coarser than the
# ledger's (pessimistic, so never below the final figure by more than ~1e-5 relative), ~10x faster.
_SEARCH_DISCRETIZATION = 1e-3


def round_event(noise_multiplier: float, sample_rate: float, sampling: str):
    """One round's client-level event: see the module docstring for the adjacency of each sampling."""
    import dp_accounting

    if sampling == "fixed":
        return dp_accounting.GaussianDpEvent(float(noise_multiplier) / 2.0)
    gaussian = dp_accounting.GaussianDpEvent(float(noise_multiplier))
    if sample_rate >= 1.0:
        return gaussian
    return dp_accounting.PoissonSampledDpEvent(float(sample_rate), gaussian)


def example_round_event(noise_multiplier: float, sample_rate: float, sampling: str):
    """One round toward one example: sensitivity 2C (multiplier sigma/2), same participation law."""
    import dp_accounting

    gaussian = dp_accounting.GaussianDpEvent(float(noise_multiplier) / 2.0)
    if sampling == "fixed" or sample_rate >= 1.0:
        return gaussian
    return dp_accounting.PoissonSampledDpEvent(float(sample_rate), gaussian)


def composed(event, releases: int):
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(event, int(releases))


@dataclass(frozen=True)
class CentralPlan:
    """Client-level DP-FedAvg as planned before round 1."""

    noise_multiplier: float  # sigma: the noise std is sigma * clipping_norm on the sum of clipped updates
    clipping_norm: float
    clipping_side: str
    rounds: int
    sampling: str  # poisson | fixed
    sample_rate: float  # q (fixed: m / N, for information only: no amplification is claimed)
    denominator: float  # qN (Poisson) or m (fixed): what the noisy sum is divided by, every round
    num_clients: int
    delta: float
    epsilon: float  # planned, tight (PLD) over all rounds

    def client_events(self, releases: int) -> tuple:
        return (composed(round_event(self.noise_multiplier, self.sample_rate, self.sampling), releases),)

    def example_events(self, releases: int) -> tuple:
        return (composed(example_round_event(self.noise_multiplier, self.sample_rate, self.sampling), releases),)

    @property
    def events(self) -> tuple:
        return self.client_events(self.rounds)

    def epsilon_after(self, releases: int, *, exact: bool = False) -> float:
        """Client-level epsilon of the first ``releases`` rounds (PLD; coarser unless ``exact``)."""
        if releases <= 0:
            return 0.0
        return _pld(self.client_events(releases), self.delta, None if exact else _SEARCH_DISCRETIZATION)

    def describe(self) -> str:
        if self.sampling == "fixed":
            return (
                f"each round exactly {self.denominator:g} of {self.num_clients} clients are sampled without "
                "replacement (secret generator); the fixed, public cohort makes the neighbour relation "
                "replace-one (sensitivity 2C), so each round is a Gaussian mechanism with multiplier "
                f"{self.noise_multiplier / 2:.4g}, no amplification claimed"
            )
        return (
            f"each round each of {self.num_clients} clients takes part independently with probability "
            f"{self.sample_rate:.4g} (Poisson sampling, secret generator); add/remove-one-client adjacency; "
            f"the noisy sum is divided by the fixed expected cohort {self.denominator:.4g}, so each round is "
            f"a Poisson-subsampled Gaussian (q={self.sample_rate:.4g}, multiplier {self.noise_multiplier:.4g})"
        )


def plan_central(
    *,
    target_epsilon: float | None,
    noise_multiplier: float | None,
    delta: float | None,
    clipping_norm: float,
    clipping_side: str,
    rounds: int,
    sampling: str,
    sample_rate: float,
    denominator: float,
    num_clients: int,
) -> CentralPlan:
    """Plan DP-FedAvg. Exactly one of ``target_epsilon`` and ``noise_multiplier`` is set.

    Args:
        sample_rate: q, each client's per-round inclusion probability (Poisson).
        denominator: the fixed divisor of the noisy sum: q·N (Poisson) or m (fixed).

    Returns:
        The plan, with sigma calibrated (PLD, bisection) so the whole run meets ``target_epsilon``.

    Raises:
        UserError: a field is out of range.
    """
    if clipping_side not in CLIPPING_SIDES:
        raise UserError(f"privacy.clipping_side={clipping_side!r} is unknown; choose server or client.")
    if sampling not in SAMPLING:
        raise UserError(f"fl.client_sampling={sampling!r} is unknown; choose poisson or fixed.")
    if clipping_norm is None or not clipping_norm > 0:
        raise UserError(f"privacy.clipping_norm={clipping_norm} must be > 0 (the L2 bound on one client's update).")
    delta = client_delta(delta, num_clients)
    if target_epsilon is not None and noise_multiplier is None:
        if not target_epsilon > 0:
            raise UserError(f"privacy.target_epsilon={target_epsilon} must be > 0; use e.g. privacy.target_epsilon=3.")
        sigma = calibrate(float(target_epsilon), delta, rounds, sample_rate, sampling)
    elif noise_multiplier is not None and target_epsilon is None:
        if not noise_multiplier > 0:
            raise UserError(f"privacy.noise_multiplier={noise_multiplier} must be > 0.")
        sigma = float(noise_multiplier)
    else:
        raise UserError(
            "privacy: set exactly one of privacy.target_epsilon and privacy.noise_multiplier "
            "(e.g. privacy.target_epsilon=3, or privacy.target_epsilon=null privacy.noise_multiplier=1.1)."
        )
    plan = CentralPlan(
        sigma,
        float(clipping_norm),
        clipping_side,
        int(rounds),
        sampling,
        float(sample_rate),
        float(denominator),
        int(num_clients),
        delta,
        math.nan,
    )
    return replace(plan, epsilon=plan.epsilon_after(rounds, exact=True))


def calibrate(target_epsilon: float, delta: float, rounds: int, sample_rate: float, sampling: str) -> float:
    """The smallest sigma (to 0.1%) whose ``rounds``-round PLD epsilon is at most ``target_epsilon``."""

    def eps(sigma: float) -> float:
        return _pld((composed(round_event(sigma, sample_rate, sampling), rounds),), delta, _SEARCH_DISCRETIZATION)

    lo, hi = 0.05, 1.0
    while eps(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise UserError(
                f"privacy.target_epsilon={target_epsilon:g} cannot be met with {rounds} rounds; "
                "use fewer rounds (fl.rounds) or a larger target."
            )
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if eps(mid) > target_epsilon else (lo, mid)
    return hi


def client_delta(delta: float | None, num_clients: int) -> float:
    """Client-level delta: given, or 1e-5 (lower for large federations); always below 1/num_clients.

    Raises:
        UserError: a given delta is not below 1/num_clients.
    """
    from privtrain.privacy import dp_sgd as dp_plan

    if delta is None:
        return dp_plan.default_delta(num_clients)
    delta = float(delta)
    if not 0.0 < delta < 1.0 / num_clients:
        raise UserError(
            f"privacy.delta={delta:g} must lie in (0, 1/clients) = (0, {1.0 / num_clients:.2e}) for "
            f"{num_clients} clients; use e.g. privacy.delta={dp_plan.default_delta(num_clients):.0e}."
        )
    return delta


def _pld(events: tuple, delta: float, discretization: float | None) -> float:
    from privtrain.privacy.events import epsilon_pld

    if discretization is None:
        return epsilon_pld(list(events), delta)
    return epsilon_pld(list(events), delta, discretization=discretization)
