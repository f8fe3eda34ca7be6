"""An empirical lower bound on ε from a membership-inference attack's errors.

If a mechanism is (ε, δ)-DP, any test that tells "x was in the training set"
from "x was not" has, at every threshold (Kairouz et al. 2015; Jagielski et al.
2020, "Auditing differentially private machine learning"):

    TPR <= e^ε · FPR + δ      and      TNR <= e^ε · FNR + δ.

So ε >= log((TPR - δ) / FPR). With finite samples we only estimate TPR and FPR;
Clopper–Pearson intervals turn the estimates into a bound that holds with the
stated confidence: ε_lb = log((TPR_lo - δ) / FPR_hi), and the same with TNR/FNR.

The best threshold is picked after seeing the scores, so every threshold on the
grid is tested at level α / m (Bonferroni): the bound holds simultaneously for
all of them, and for the maximum over them. Callers that take the maximum over
several attacks pass ``n_attacks`` so that maximum is covered too.

Example:
    >>> round(epsilon_from_counts(tp=1000, n_pos=1000, fp=0, n_neg=1000, delta=0.0, alpha=0.05), 3)
    5.809
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided lower confidence bound (level 1 - alpha) on a binomial rate k/n."""
    from scipy.stats import beta

    _check(k, n, alpha)
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided upper confidence bound (level 1 - alpha) on a binomial rate k/n."""
    from scipy.stats import beta

    _check(k, n, alpha)
    return 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))


def _check(k: int, n: int, alpha: float) -> None:
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"Expected 0 <= k={k} <= n={n} and n >= 1.")
    if not 0 < alpha < 1:
        raise ValueError(f"Expected alpha={alpha} in (0, 1).")


def epsilon_from_counts(*, tp: int, n_pos: int, fp: int, n_neg: int, delta: float, alpha: float) -> float:
    """ε lower bound from one threshold: log((TPR_lo - δ) / FPR_hi), or 0 when nothing is shown."""
    tpr_lo = clopper_pearson_lower(tp, n_pos, alpha)
    fpr_hi = clopper_pearson_upper(fp, n_neg, alpha)
    if tpr_lo - delta <= 0 or tpr_lo - delta <= fpr_hi:
        return 0.0
    return math.log((tpr_lo - delta) / fpr_hi)


@dataclass(frozen=True)
class EpsilonBound:
    """The best threshold's bound. ``side`` is "tpr" (flag high scores) or "tnr" (flag low scores)."""

    epsilon: float
    side: str
    threshold: float | None
    tp: int  # hits of the flagged side: members flagged ("tpr") or non-members cleared ("tnr")
    n_pos: int
    fp: int  # errors of the other side: non-members flagged, or members cleared
    n_neg: int
    confidence: float
    delta: float
    n_thresholds: int  # thresholds tested, per attack
    n_attacks: int

    def to_dict(self) -> dict:
        return asdict(self)


def fp_grid(n: int) -> list[int]:
    """Error counts to try: 0, 1, 2, 3, 4, 6, 8, ... (geometric) up to half the sample.

    A bound needs few false positives, so the grid is dense there; a short grid
    keeps the Bonferroni correction mild.
    """
    grid, k = [0], 1
    while k <= n // 2:
        grid.append(k)
        k = max(k + 1, int(round(k * 1.5)))
    return grid


def epsilon_lower_bound(
    members: np.ndarray, nonmembers: np.ndarray, *, delta: float, confidence: float = 0.95, n_attacks: int = 1
) -> EpsilonBound:
    """The largest ε lower bound over a grid of thresholds on attack scores (higher = "member").

    Args:
        members: scores of examples that were in the training set.
        nonmembers: scores of examples that were not.
        delta: the δ of the claim being audited.
        confidence: the bound holds with this probability, over all thresholds (and attacks).
        n_attacks: how many attacks the caller maximises over (Bonferroni).

    Returns:
        An :class:`EpsilonBound`; its ``epsilon`` is 0.0 when the attack shows nothing.
    """
    members = np.sort(np.asarray(members, dtype=float))
    nonmembers = np.sort(np.asarray(nonmembers, dtype=float))
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError("Expected at least one member and one non-member score.")
    if not 0 < confidence < 1:
        raise ValueError(f"Expected confidence={confidence} in (0, 1).")
    candidates = []
    # "tpr" side: flag scores strictly above the (fp+1)-th largest non-member score.
    for fp in fp_grid(len(nonmembers)):
        t = nonmembers[-(fp + 1)]
        fp_real = int(np.sum(nonmembers > t))
        candidates.append(("tpr", float(t), int(np.sum(members > t)), len(members), fp_real, len(nonmembers)))
    # "tnr" side: clear scores strictly below the (fn+1)-th smallest member score.
    for fn in fp_grid(len(members)):
        t = members[fn]
        fn_real = int(np.sum(members < t))
        candidates.append(("tnr", float(t), int(np.sum(nonmembers < t)), len(nonmembers), fn_real, len(members)))
    # Each threshold uses two one-sided intervals (a lower bound on one rate, an upper bound on the other):
    # at level alpha each they hold jointly with probability 1 - 2 alpha. Bonferroni over both, every
    # threshold and every attack gives the stated confidence.
    alpha = (1 - confidence) / (2 * len(candidates) * n_attacks)
    best = EpsilonBound(
        0.0, "tpr", None, 0, len(members), 0, len(nonmembers), confidence, delta, len(candidates), n_attacks
    )
    for side, t, tp, n_pos, fp, n_neg in candidates:
        eps = epsilon_from_counts(tp=tp, n_pos=n_pos, fp=fp, n_neg=n_neg, delta=delta, alpha=alpha)
        if eps > best.epsilon:
            best = EpsilonBound(eps, side, t, tp, n_pos, fp, n_neg, confidence, delta, len(candidates), n_attacks)
    return best


def max_provable_epsilon(
    n_members: int, n_nonmembers: int, *, delta: float, confidence: float = 0.95, n_attacks: int = 1
) -> float:
    """The bound a perfect attack would reach with these sample sizes: the audit cannot show more."""
    perfect = epsilon_lower_bound(
        np.ones(n_members), np.zeros(n_nonmembers), delta=delta, confidence=confidence, n_attacks=n_attacks
    )
    return perfect.epsilon
