"""LiRA: the likelihood-ratio membership attack with shadow models (Carlini et al. 2022,
"Membership Inference Attacks From First Principles").

K shadow models are trained with the target's recipe and settings on random
halves of a data pool. For each example, the shadows that trained on it ("in")
and those that did not ("out") give two distributions of its logit-scaled
confidence φ = log(p_y / (1 - p_y)). The target's φ is then scored by how much
more likely it is under "in" than under "out".

- **online** (the pool is the private dataset itself): Gaussian likelihood ratio
  log N(φ; μ_in, σ_in) - log N(φ; μ_out, σ_out).
- **offline** (the pool is separate, declared audit data, so no shadow ever saw
  a target example): the one-sided z-score (φ - μ_out) / σ_out.

With few shadows (K < 16) one variance is pooled over all examples and over
"in" and "out" ("global variance", as the paper recommends for few shadows);
the per-example means stay per example. A single variance also keeps the score
monotone in φ for every example, which matters because shadows train on half
the rows while the target trained on more: with separate "in" and "out"
variances, that shift alone pushed the attack below chance on models that do
not leak.

Shadows come in complementary pairs: shadow 2i trains on a random half H_i of
the pool and shadow 2i+1 on the other half. Every shadow then has the same
size, and every example is in exactly K/2 of them, which is what the ledger is
charged for (:func:`shadow_halves`).
"""

from __future__ import annotations

import numpy as np

PER_EXAMPLE_VARIANCE_FROM = 16  # shadows; below this, variances are pooled over examples


def shadow_halves(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A (k, n) boolean "in" matrix: complementary halves of floor(n/2) rows each.

    With n odd, one row per pair is left out of both halves.

    Raises:
        ValueError: ``k`` is not a positive even number or ``n < 2``.
    """
    if k < 2 or k % 2:
        raise ValueError(f"Expected an even number of shadow models >= 2, got {k}.")
    if n < 2:
        raise ValueError(f"Expected at least 2 rows in the shadow pool, got {n}.")
    half = n // 2
    inside = np.zeros((k, n), dtype=bool)
    for pair in range(k // 2):
        order = rng.permutation(n)
        inside[2 * pair, order[:half]] = True
        inside[2 * pair + 1, order[half : 2 * half]] = True
    return inside


def _gauss_logpdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=0)
    sums = np.where(mask, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _spread(values: np.ndarray, mask: np.ndarray, mean: np.ndarray, per_example: bool) -> np.ndarray | float:
    resid = np.where(mask, values - mean, 0.0)
    if per_example:
        counts = np.maximum(mask.sum(axis=0) - 1, 1)
        return np.sqrt((resid**2).sum(axis=0) / counts) + 1e-6
    dof = max(int(mask.sum()) - int((mask.sum(axis=0) > 0).sum()), 1)
    return float(np.sqrt((resid**2).sum() / dof)) + 1e-6


def online_scores(target_phi: np.ndarray, shadow_phi: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Online LiRA: the log likelihood ratio of "in" vs "out" per example (higher = member).

    Args:
        target_phi: (n,) the target model's logit-scaled confidences.
        shadow_phi: (k, n) each shadow model's on the same examples.
        inside: (k, n) whether shadow j trained on example i.
    """
    k = shadow_phi.shape[0]
    per_example = k >= PER_EXAMPLE_VARIANCE_FROM
    mu_in = _masked_mean(shadow_phi, inside)
    mu_out = _masked_mean(shadow_phi, ~inside)
    # An example no shadow trained on (n odd) gets the average in/out shift.
    shift = np.nanmean(mu_in - mu_out) if np.isfinite(mu_in - mu_out).any() else 0.0
    mu_in = np.where(np.isnan(mu_in), mu_out + shift, mu_in)
    mu_out = np.where(np.isnan(mu_out), mu_in - shift, mu_out)
    if per_example:
        sd_in = _spread(shadow_phi, inside, mu_in, True)
        sd_out = _spread(shadow_phi, ~inside, mu_out, True)
    else:
        resid = np.where(inside, shadow_phi - mu_in, shadow_phi - mu_out)
        dof = max(resid.size - 2 * shadow_phi.shape[1], 1)
        sd_in = sd_out = float(np.sqrt((resid**2).sum() / dof)) + 1e-6
    return _gauss_logpdf(target_phi, mu_in, sd_in) - _gauss_logpdf(target_phi, mu_out, sd_out)


def offline_scores(target_phi: np.ndarray, shadow_phi: np.ndarray) -> np.ndarray:
    """Offline LiRA: how far above the "out" distribution the target's φ lies (higher = member)."""
    out = np.ones_like(shadow_phi, dtype=bool)
    mu_out = shadow_phi.mean(axis=0)
    sd_out = _spread(shadow_phi, out, mu_out, shadow_phi.shape[0] >= PER_EXAMPLE_VARIANCE_FROM)
    return (target_phi - mu_out) / sd_out
