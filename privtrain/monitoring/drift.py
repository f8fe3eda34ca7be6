"""Drift of new rows against a run's DP reference statistics: PSI per feature and for the predicted classes.

The population stability index of a reference distribution ``e`` and an observed one ``a`` over the same
bins is ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)``; empty bins take a small floor (``FLOOR``) so the sum
stays finite. Conventional reading: < 0.1 stable, 0.1-0.25 a moderate shift (warn), > 0.25 a major shift
(alert). The thresholds come from the policy (``monitoring: {psi_warn, psi_alert}``), else 0.1 / 0.25.

The reference counts are noisy (that is what makes them releasable): negative counts are clipped to 0
before normalising (post-processing). Beside each PSI the report gives the PSI expected from noise
alone (the reference's Gaussian noise and the new rows' sampling, simulated from the released values),
so a reader can tell drift from a reference too noisy to judge it. The exit status uses the PSI alone.

Guarantee. The new rows are the monitor's own data; toward the training rows the report is post-processing
of the reference statistics (and of the DP model's predictions), so its guarantee is theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLOOR = 1e-4
PSI_WARN, PSI_ALERT = 0.1, 0.25
PREDICTED = "(predicted class)"


@dataclass(frozen=True)
class Drift:
    """One compared distribution: its PSI, the PSI expected without drift, and its level."""

    name: str
    psi: float
    expected: float
    level: str  # ok | warn | alert
    reference: list[float]
    observed: list[float]
    bins: list[str]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "psi": round(self.psi, 6),
            "expected_without_drift": round(self.expected, 6),
            "level": self.level,
            "bins": self.bins,
            "reference": [round(v, 6) for v in self.reference],
            "observed": [round(v, 6) for v in self.observed],
        }


def proportions(counts) -> np.ndarray:
    """Noisy counts as a distribution: negatives clipped to 0, normalised, floored at FLOOR and renormalised."""
    c = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    total = c.sum()
    p = c / total if total > 0 else np.full(len(c), 1.0 / len(c))
    p = np.maximum(p, FLOOR)
    return p / p.sum()


def psi(reference: np.ndarray, observed: np.ndarray) -> float:
    """PSI of two distributions over the same bins (both already floored)."""
    return float(np.sum((observed - reference) * np.log(observed / reference)))


def expected_psi(noisy_counts, noise_sd: float, n_new: int, *, draws: int = 200) -> float:
    """The mean PSI with no drift at all, by simulation: taking the noisy reference as the truth, draw a fresh
    reference with the same Gaussian noise and ``n_new`` new rows from it, and put both through the same
    clipping, flooring and PSI. Uses released values only (post-processing), with a fixed public seed."""
    rng = np.random.default_rng(0)
    c = np.clip(np.asarray(noisy_counts, dtype=np.float64), 0.0, None)
    e = proportions(noisy_counts)
    total = float(c.sum())
    values = []
    for _ in range(draws):
        ref = proportions(e * total + rng.normal(0.0, noise_sd, size=len(e)))
        new = proportions(rng.multinomial(max(n_new, 1), e))
        values.append(psi(ref, new))
    return float(np.mean(values))


def level(value: float, warn: float, alert: float) -> str:
    return "alert" if value > alert else "warn" if value > warn else "ok"


def compare(
    name: str, bins: list[str], noisy_counts, observed_counts, noise_sd: float, *, warn: float, alert: float
) -> Drift:
    """The drift of observed counts against the noisy reference counts over the same bins."""
    e, a = proportions(noisy_counts), proportions(observed_counts)
    value = psi(e, a)
    n_new = int(np.sum(observed_counts))
    return Drift(
        name,
        value,
        expected_psi(noisy_counts, noise_sd, n_new),
        level(value, warn, alert),
        e.tolist(),
        a.tolist(),
        list(bins),
    )


def thresholds(policy, warn: float | None, alert: float | None) -> tuple[float, float, str]:
    """(warn, alert, where they came from): the policy's ``monitoring`` section, else the defaults; a command-line
    value may only tighten the policy's.

    Raises:
        UserError: a looser threshold than the policy's, or warn >= alert.
    """
    from privtrain.errors import UserError

    base_warn, base_alert, origin = PSI_WARN, PSI_ALERT, "defaults"
    if policy is not None and getattr(policy, "monitoring", None):
        base_warn, base_alert = policy.monitoring
        origin = f"policy {policy.path.name}"
    for flag, value, base in (("--warn", warn, base_warn), ("--threshold", alert, base_alert)):
        if value is None:
            continue
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"monitor {flag}={value}: give a positive PSI, e.g. {flag} {base:g}.")
        if origin != "defaults" and value > base:
            raise UserError(
                f"monitor {flag}={value:g} is looser than the {origin}'s {base:g}; a command line may only "
                "tighten the policy's thresholds (drop the flag or lower it)."
            )
    warn_v = base_warn if warn is None else warn
    alert_v = base_alert if alert is None else alert
    if warn is not None or alert is not None:
        origin += " and the command line"
    if not warn_v < alert_v:
        raise UserError(f"monitor: the warning threshold ({warn_v:g}) must be below the alert threshold ({alert_v:g}).")
    return warn_v, alert_v, origin
