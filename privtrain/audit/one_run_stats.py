"""Statistics of the one-run audit: canary scores in, an ε lower bound at a stated confidence out.

Setting (Steinke, Nasr and Jagielski 2023, "Privacy Auditing with One (1) Training Run"): m canaries,
each included in the training set independently with probability 1/2; after one run an attack gives
every canary a score, higher meaning "included". Three bounds are computed from the same scores.

**1. White-box Gaussian estimate ("gauss").** In white-box mode canary j owns one coordinate of the
update, orthogonal to every real example's gradient. Normalised so that a sampled, clipped canary
contributes 1, step t shows ``x_tj = b_tj + N(0, σ²)`` with ``b_tj ~ Bernoulli(q)`` for an included
canary and ``b_tj = 0`` for an excluded one. The likelihood ratio of one step is
``(1 - q) + q exp((x - 1/2) / σ²)``, so the Neyman-Pearson score of T steps is

    s_j = Σ_t log(1 - q + q exp((x_tj - 1/2) / σ²))                                  (:func:`llr_scores`)

By the central limit theorem for composed subsampled Gaussians (Dong, Roth and Su 2022, Thm 5) the
pair (out, in) of s tends to a Gaussian pair N(0, 1) vs N(μ, 1) after standardising, with
μ = q √(T (e^{1/σ²} - 1)), i.e. the run is μ-GDP. The audit estimates μ without trusting q or σ:

    μ̂ = (mean(s_in) - mean(s_out)) / sd(s_out)                                      (:func:`gauss_mu`)

The standardised mean difference is the GDP parameter of a Gaussian pair and invariant to the
score's scale and location. Its variance by the delta method (n_in, n_out scores; v the variances,
κ the kurtosis and m₃ the third central moment of the out scores):

    Var(μ̂) ≈ (v_in / n_in + v_out / n_out) / v_out + μ̂² (κ - 1) / (4 n_out) + μ̂ m₃ / (v_out^{3/2} n_out)

(for normal scores: v_in/(v_out n_in) + 1/n_out + μ̂²/(2 n_out)). The one-sided lower confidence
bound is μ̂ - z_{1-α} se. A μ-GDP mechanism is (ε, δ(ε))-DP for every ε with (Dong et al., Cor 2.13)

    δ(ε) = Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2)                                         (:func:`gdp_delta`)

which is the analytic Gaussian mechanism with σ = 1/μ (Balle and Wang 2018): :func:`gdp_epsilon`
inverts it with dp-accounting's ``get_epsilon_gaussian``. The bound ε(μ_lo) at the run's δ is an
*estimate* with an asymptotic confidence level, resting on two facts a correct DP-SGD satisfies:
canary coordinates are independent (independent noise per coordinate, independent sampling), and
the privacy curve is close to Gaussian. For subsampled Gaussians the CLT curve lies *below* the
exact one at small δ (the privacy loss has a heavy right tail), so ε(μ) under-states the true ε
and the estimate stays on the conservative side; benchmarks/results/one_run_audit shows the margin.

**2. Counting bound ("steinke"), a proof for any mechanism.** Guess "in" for the k₊ highest scores
and "out" for the k₋ lowest; of r = k₊ + k₋ guesses, v are right. If the mechanism is (ε, δ)-DP in
each canary, Steinke et al. (Thm 5.2) show

    P[V ≥ v] ≤ β + 2 m δ max_{i=1..v} (P[v - i ≤ Bin(r, p) < v] / i),  β = P[Bin(r, p) ≥ v], p = e^ε/(1+e^ε)

whatever the dependence between canaries. :func:`steinke_epsilon` returns the largest ε that this
p-value rejects at level α; it needs no distributional assumption, and is correspondingly looser.

**3. GDP from the ROC ("gdp_roc").** For any threshold, a μ-GDP test obeys
FNR ≥ Φ(Φ⁻¹(1 - FPR) - μ), so μ ≥ Φ⁻¹(1 - FPR) - Φ⁻¹(FNR) (Nasr et al. 2023). With Clopper-Pearson
upper bounds on both rates this gives a lower confidence bound on μ that stays finite when the out
scores are all equal (the replay attack on replayed noise), where the moment estimate divides by 0.

**Several attacks.** The audit reports the largest bound over its attacks; each is computed at level
α / (number of attacks) (Bonferroni), and inside an attack every threshold or guess count tried is
corrected again, so the maximum holds at the stated confidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# --- GDP <-> (ε, δ) -----------------------------------------------------------------------------------------


def gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of a μ-GDP mechanism: Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2) (Dong, Roth and Su, Cor 2.13)."""
    from scipy.stats import norm

    if mu <= 0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    first = norm.logcdf(-epsilon / mu + mu / 2)
    second = epsilon + norm.logcdf(-epsilon / mu - mu / 2)
    return float(math.exp(first) * -math.expm1(second - first)) if second < first else 0.0


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest ε with δ(ε) ≤ ``delta`` for a μ-GDP mechanism (0 for μ ≤ 0, ∞ for μ = ∞).

    Uses dp-accounting's analytic Gaussian: μ-GDP is the Gaussian mechanism with sensitivity 1 and σ = 1/μ.
    """
    from dp_accounting import get_epsilon_gaussian

    if not 0 < delta < 1:
        raise ValueError(f"Expected delta={delta} in (0, 1).")
    if mu <= 0 or math.isnan(mu):
        return 0.0
    if math.isinf(mu):
        return math.inf
    return float(get_epsilon_gaussian(1.0 / mu, delta))


def gdp_mu(epsilon: float, delta: float) -> float:
    """The μ whose (ε, δ) curve passes through (``epsilon``, ``delta``): the GDP reading of a claim."""
    from dp_accounting import get_sigma_gaussian

    if math.isinf(epsilon):
        return math.inf
    return 1.0 / float(get_sigma_gaussian(epsilon, delta))


def clt_mu(sample_rate: float, noise_multiplier: float, steps: int) -> float:
    """μ of T Poisson-subsampled Gaussian steps by the CLT: q √(T (e^{1/σ²} - 1)) (Dong et al., Cor 5.4)."""
    return sample_rate * math.sqrt(steps * math.expm1(1.0 / noise_multiplier**2))


# --- scores -------------------------------------------------------------------------------------------------


def llr_scores(x: np.ndarray, sample_rate: float, sigma: float) -> np.ndarray:
    """Σ_t log(1 - q + q exp((x_t - 1/2)/σ²)) over the last axis of ``x`` (steps), one score per row.

    ``x`` holds the normalised observations: a sampled canary adds 1, the noise has std ``sigma``.
    """
    z = (np.asarray(x, dtype=np.float64) - 0.5) / sigma**2
    return np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + z).sum(axis=-1)


# --- 1. the Gaussian estimate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussEstimate:
    """μ̂ with its standard error, a two-sided interval and the one-sided lower bound, all at ``confidence``."""

    mu: float
    se: float
    interval: tuple[float, float]
    mu_lower: float
    confidence: float
    n_tests: int
    epsilon_lower: float
    delta: float

    def to_dict(self) -> dict:
        return asdict(self)


def standardized_difference_se(
    mu: float, n_in: int, n_out: int, var_ratio: float = 1.0, skew: float = 0.0, kurtosis: float = 3.0
) -> float:
    """Delta-method standard error of (mean_in - mean_out) / sd_out (see the module docstring).

    Args:
        var_ratio: v_in / v_out. skew: m₃ / v_out^{3/2} of the out scores. kurtosis: m₄ / v_out² (3 if normal).
    """
    var = var_ratio / n_in + 1.0 / n_out + mu**2 * (kurtosis - 1.0) / (4.0 * n_out) + mu * skew / n_out
    return math.sqrt(max(var, 0.0))


def gauss_mu(in_scores, out_scores, *, delta: float, confidence: float = 0.95, n_tests: int = 1) -> GaussEstimate:
    """The GDP estimate μ̂ = (mean_in - mean_out) / sd_out, its interval and ε(μ_lower) at ``delta``.

    The lower bound and the interval are at level (1 - confidence) / ``n_tests`` (Bonferroni over the
    attacks the caller maximises over). Out scores that are all equal give μ̂ = ∞ when the in scores
    are larger on average (noise that does not vary cannot hide anything), 0 otherwise.

    Raises:
        ValueError: fewer than 2 scores on a side, or a confidence outside (0, 1).
    """
    from scipy.stats import norm

    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Expected at least 2 in and 2 out scores, got {len(a)} and {len(b)}.")
    if not 0 < confidence < 1:
        raise ValueError(f"Expected confidence={confidence} in (0, 1).")
    alpha = (1 - confidence) / n_tests
    diff, v_out = a.mean() - b.mean(), b.var(ddof=1)
    if v_out <= 1e-300 * max(1.0, diff**2):
        mu = math.inf if diff > 0 else 0.0
        return GaussEstimate(mu, 0.0, (mu, mu), mu, confidence, n_tests, gdp_epsilon(mu, delta), delta)
    mu = diff / math.sqrt(v_out)
    centred = b - b.mean()
    skew = float(np.mean(centred**3)) / v_out**1.5
    kurtosis = float(np.mean(centred**4)) / v_out**2
    se = standardized_difference_se(mu, len(a), len(b), a.var(ddof=1) / v_out, skew, kurtosis)
    half = float(norm.ppf(1 - alpha / 2)) * se
    lower = mu - float(norm.ppf(1 - alpha)) * se
    return GaussEstimate(
        float(mu),
        se,
        (float(mu - half), float(mu + half)),
        float(lower),
        confidence,
        n_tests,
        gdp_epsilon(lower, delta),
        delta,
    )


# --- 2. the counting bound ----------------------------------------------------------------------------------


def steinke_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[≥ v of r guesses right] under an (ε, δ)-DP mechanism with m canaries (Steinke et al. Thm 5.2)."""
    from scipy.stats import binom

    if not 0 <= v <= r <= m:
        raise ValueError(f"Expected 0 <= v={v} <= r={r} <= m={m}.")
    p = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(binom.sf(v - 1, r, p))
    if delta == 0 or v == 0:
        return beta
    i = np.arange(1, v + 1)
    alpha = float(np.max((binom.sf(v - i - 1, r, p) - beta) / i))
    return min(1.0, beta + 2 * m * delta * alpha)


def steinke_epsilon(m: int, r: int, v: int, *, alpha: float, delta: float) -> float:
    """The largest ε whose claim (ε, δ) the guesses reject at level ``alpha``; 0 if none is rejected."""
    from scipy.optimize import brentq

    if r == 0 or steinke_p_value(m, r, v, 0.0, delta) > alpha:
        return 0.0
    hi = 1.0
    while steinke_p_value(m, r, v, hi, delta) <= alpha:
        hi *= 2
        if hi > 1e3:
            return math.inf
    return float(brentq(lambda e: steinke_p_value(m, r, v, e, delta) - alpha, 0.0, hi, xtol=1e-6))


@dataclass(frozen=True)
class CountingBound:
    """The best guess counts of the counting bound and what they show."""

    epsilon_lower: float
    guesses_in: int
    guesses_out: int
    correct: int
    m: int
    confidence: float
    n_tests: int
    tried: int

    def to_dict(self) -> dict:
        return asdict(self)


def guess_counts(m: int) -> list[int]:
    """How many guesses to try on each side: a short geometric grid up to m/2 (a mild Bonferroni)."""
    grid, k = [], max(1, m // 100)
    while k <= m // 2:
        grid.append(k)
        k = max(k + 1, round(k * 2))
    return grid or [1]


def steinke_bound(in_scores, out_scores, *, delta: float, confidence: float = 0.95, n_tests: int = 1) -> CountingBound:
    """The counting bound over guesses "in" for the top k and (for two-sided tries) "out" for the bottom k."""
    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    scores = np.concatenate([a, b])
    truth = np.concatenate([np.ones(len(a), bool), np.zeros(len(b), bool)])
    order = np.argsort(-scores, kind="stable")
    ranked = truth[order]
    m = len(scores)
    tries = [(k, 0) for k in guess_counts(m)] + [(k, k) for k in guess_counts(m)]
    alpha = (1 - confidence) / (n_tests * len(tries))
    best = CountingBound(0.0, 0, 0, 0, m, confidence, n_tests, len(tries))
    for k_in, k_out in tries:
        correct = int(ranked[:k_in].sum()) + (int((~ranked[m - k_out :]).sum()) if k_out else 0)
        eps = steinke_epsilon(m, k_in + k_out, correct, alpha=alpha, delta=delta)
        if eps > best.epsilon_lower:
            best = CountingBound(eps, k_in, k_out, correct, m, confidence, n_tests, len(tries))
    return best


# --- 3. GDP from the ROC ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RocGdpBound:
    mu_lower: float
    epsilon_lower: float
    fpr_upper: float
    fnr_upper: float
    threshold: float | None
    confidence: float
    n_tests: int

    def to_dict(self) -> dict:
        return asdict(self)


def gdp_roc_bound(in_scores, out_scores, *, delta: float, confidence: float = 0.95, n_tests: int = 1) -> RocGdpBound:
    """μ ≥ Φ⁻¹(1 - FPR_hi) - Φ⁻¹(FNR_hi) at the best threshold of a grid, and ε of that μ at ``delta``.

    Thresholds sit just above the 0, 1, 2, 3, 4, 6, ... largest out score (dense where a bound needs
    few false positives); every one is tested at level α / (2 · thresholds · n_tests).
    """
    from scipy.stats import norm

    from privtrain.audit.bounds import clopper_pearson_upper, fp_grid

    a = np.sort(np.asarray(in_scores, dtype=np.float64))
    b = np.sort(np.asarray(out_scores, dtype=np.float64))
    grid = fp_grid(len(b))
    alpha = (1 - confidence) / (2 * len(grid) * n_tests)
    best = RocGdpBound(0.0, 0.0, 1.0, 1.0, None, confidence, n_tests)
    for fp in grid:
        t = b[-(fp + 1)]
        fp_real = int(np.sum(b > t))
        fn = int(np.sum(a <= t))
        fpr_hi = clopper_pearson_upper(fp_real, len(b), alpha)
        fnr_hi = clopper_pearson_upper(fn, len(a), alpha)
        if fpr_hi >= 1 or fnr_hi >= 1:
            continue
        mu = float(norm.isf(fpr_hi) - norm.ppf(fnr_hi))
        if mu > best.mu_lower:
            best = RocGdpBound(mu, gdp_epsilon(mu, delta), fpr_hi, fnr_hi, float(t), confidence, n_tests)
    return best
