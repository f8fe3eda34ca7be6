"""Planning DP-SGD: delta, sampling rate, steps, noise, and the events they imply.

Everything here is computed from the config and declared public facts, before any training row is
read, so the ledger can refuse a run that does not fit. The row count that fixes the sampling rate,
the steps and delta is a **public** one (``dataset.public_n``, a built-in's published size), never
the number of rows actually read: with Opacus' own rate ``1/ceil(n/batch)`` and divisor
``floor(n q)``, the datasets with 128 and 129 training rows (batch 128) would run q = 1 against
q = 0.5 and divide by 128 against 64, so the update's scale alone would tell whether a row was
there, whatever the noise. Here ``q = batch / public rows``, the divisor is the batch size, and
the steps are ``epochs * ceil(public rows / batch)``: one mechanism for every pair of neighbouring
datasets, which is what the add/remove accounting assumes (docs/privacy.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from privtrain.errors import UserError
from privtrain.privacy.events import DpEvent, dp_sgd_event

ACCOUNTANTS = ("prv", "rdp", "gdp")
# Beyond these, a guarantee says nothing useful and the accountants' time and memory explode (PRV needed
# 77 s at σ = 0.1 and did not finish at ε = 1e6): refused with one line instead.
MAX_TARGET_EPSILON = 50.0
MIN_NOISE_MULTIPLIER = 0.3
GRAD_SAMPLE_MODES = ("auto", "hooks", "ghost", "functorch")  # auto: privtrain.privacy.clipping_mode
CLIPPING = ("flat", "per_layer")
AMP_GHOST = (
    "recipe.amp=true cannot be combined with recipe.grad_sample_mode=ghost under DP: ghost clipping takes its "
    "norms and its clipped sum in bfloat16, so a clipped gradient can exceed privacy.max_grad_norm (by 1% "
    "measured); use recipe.grad_sample_mode=hooks or functorch with amp (clipped in float32), or recipe.amp=false."
)
GDP_NOTE = (
    "the gdp accountant is an approximation (central limit theorem) that can underestimate epsilon; "
    "the ledger composes the same events with a tight PLD accountant"
)


@dataclass(frozen=True)
class DpSgdPlan:
    """A DP-SGD run as planned: enough to account for it and to reproduce its noise."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    max_grad_norm: float
    accountant: str
    epsilon: float  # planned epsilon of these steps alone, by ``accountant``

    @property
    def events(self) -> tuple[DpEvent, ...]:
        return (dp_sgd_event(sample_rate=self.sample_rate, noise_multiplier=self.noise_multiplier, steps=self.steps),)


def default_delta(n: int) -> float:
    """1e-5, or a power of ten at most 1/(10 n) for larger datasets: well below 1/n."""
    return min(1e-5, 10.0 ** math.floor(math.log10(0.1 / n)))


def resolve_delta(delta: float | None, n: int) -> float:
    """The run's delta. Raises :class:`UserError` unless 0 < delta < 1/n."""
    if delta is None:
        return default_delta(n)
    delta = float(delta)
    if not 0.0 < delta < 1.0 / n:
        raise UserError(
            f"privacy.delta={delta:g} must lie in (0, 1/n) = (0, {1.0 / n:.2e}) for n={n} training rows; "
            f"use e.g. privacy.delta={default_delta(n):.0e}."
        )
    return delta


def public_rows(public_n: int, *kept: float) -> int:
    """The public row count of a share of a table of ``public_n`` rows that keeps each row with the
    probabilities ``kept`` (e.g. 1 - test_size): its expected size, rounded; at least 1.

    The keyed split sends each row to a side independently (:mod:`privtrain.data.assign`), so the
    expected share is a public number whatever the rows are.
    """
    share = float(public_n)
    for fraction in kept:
        share *= fraction
    return max(1, round(share))


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """``ceil(n_train / batch_size)``, the steps of one epoch over ``n_train`` (public) training rows.

    Raises:
        UserError: a batch below 1 or above the training rows.
    """
    if batch_size < 1:
        raise UserError(f"recipe.batch_size={batch_size} must be at least 1.")
    if batch_size > n_train:
        raise UserError(
            f"recipe.batch_size={batch_size} is larger than the {n_train} training rows; use recipe.batch_size<={n_train}."
        )
    return math.ceil(n_train / batch_size)


def sampling(n_train: int, batch_size: int) -> tuple[float, int]:
    """(Poisson sampling rate, steps per epoch) for an expected batch of ``batch_size`` among ``n_train``
    public training rows: ``batch_size / n_train`` and ``ceil(n_train / batch_size)``.

    Raises:
        UserError: a batch below 1 or above the training rows.
    """
    per_epoch = batches_per_epoch(n_train, batch_size)
    return batch_size / n_train, per_epoch


def plan(
    *,
    n_train: int,
    batch_size: int,
    epochs: int,
    target_epsilon: float | None,
    noise_multiplier: float | None,
    delta: float | None,
    max_grad_norm: float,
    accountant: str,
) -> DpSgdPlan:
    """Plan DP-SGD with Poisson sampling at rate ``batch_size / n_train`` for ``epochs * ceil(n_train / batch_size)``
    steps; the training divides every step's noisy sum by ``batch_size``.

    ``n_train`` is the **public** number of training rows (a declared or published size, see the
    module docstring), never the count of rows read. Exactly one of ``target_epsilon`` (noise
    calibrated to reach it) and ``noise_multiplier`` must be set.

    Raises:
        UserError: a field is out of range or both/neither noise settings are given.
    """
    if accountant not in ACCOUNTANTS:
        raise UserError(f"privacy.accountant={accountant!r} is unknown; choose one of {', '.join(ACCOUNTANTS)}.")
    if epochs < 1:
        raise UserError(f"recipe.epochs={epochs} must be at least 1.")
    if max_grad_norm is None or max_grad_norm <= 0:
        raise UserError(f"privacy.max_grad_norm={max_grad_norm} must be > 0.")
    sample_rate, per_epoch = sampling(n_train, batch_size)
    steps = per_epoch * epochs
    delta = resolve_delta(delta, n_train)
    if target_epsilon is not None and noise_multiplier is None:
        check_target(target_epsilon)
        sigma = calibrate(target_epsilon, delta, sample_rate, steps, accountant)
    elif noise_multiplier is not None and target_epsilon is None:
        check_noise(noise_multiplier)
        sigma = float(noise_multiplier)
    else:
        raise UserError(
            "privacy: set exactly one of privacy.target_epsilon and privacy.noise_multiplier "
            "(e.g. privacy.target_epsilon=3, or privacy.target_epsilon=null privacy.noise_multiplier=1.1)."
        )
    eps = epsilon_of(sigma, sample_rate, steps, delta, accountant)
    return DpSgdPlan(sigma, sample_rate, steps, delta, float(max_grad_norm), accountant, eps)


def check_target(target_epsilon: float, field: str = "privacy.target_epsilon") -> None:
    """Raise :class:`UserError` unless 0 < ε ≤ MAX_TARGET_EPSILON."""
    if not target_epsilon > 0:
        raise UserError(f"{field}={target_epsilon} must be > 0; use e.g. {field}=3.")
    if target_epsilon > MAX_TARGET_EPSILON:
        raise UserError(
            f"{field}={target_epsilon:g} is above {MAX_TARGET_EPSILON:g}, where a DP guarantee no longer "
            "says anything useful (and accounting explodes); use privacy=none for a non-private baseline."
        )


def check_noise(noise_multiplier: float, field: str = "privacy.noise_multiplier") -> None:
    if not noise_multiplier >= MIN_NOISE_MULTIPLIER:
        raise UserError(
            f"{field}={noise_multiplier} is below {MIN_NOISE_MULTIPLIER}, where ε runs into the hundreds "
            "and accounting takes minutes; use a larger noise multiplier, or privacy=none."
        )


def calibrate(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise multiplier whose epsilon is within 1% below ``target_epsilon``.

    Raises:
        UserError: no noise reaches the target (too small an ε for this many steps).
    """
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' notes on alpha ranges and GDP; see GDP_NOTE
        try:
            return float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant=accountant,
                    epsilon_tolerance=0.005,
                )
            )
        except ValueError as exc:  # Opacus: "The privacy budget is too low."
            raise UserError(
                f"privacy.target_epsilon={target_epsilon:g} cannot be reached with {steps} steps at "
                f"sampling rate {sample_rate:.3g} ({exc}); raise it, or train fewer steps."
            ) from None


def make_accountant(accountant: str):
    from opacus.accountants import create_accountant

    return create_accountant(mechanism=accountant)


def epsilon_of(sigma: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    acc = make_accountant(accountant)
    acc.history = [(sigma, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))
