"""The one-run audit's statistics against closed forms and simulated mechanisms with a known μ (fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from privtrain.audit import one_run_stats as S

# --- GDP <-> (ε, δ) -------------------------------------------------------------------------------------------


def test_gdp_delta_closed_forms():
    # ε = 0: δ = Φ(μ/2) - Φ(-μ/2), the total variation distance of N(0,1) and N(μ,1).
    assert S.gdp_delta(1.0, 0.0) == pytest.approx(norm.cdf(0.5) - norm.cdf(-0.5), rel=1e-12)
    assert S.gdp_delta(1.0, 0.0) == pytest.approx(0.38292492254802624, rel=1e-12)
    # Cor 2.13 at a point, written out by hand.
    mu, eps = 2.0, 3.0
    assert S.gdp_delta(mu, eps) == pytest.approx(
        norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2)
    )
    assert S.gdp_delta(0.0, 1.0) == 0.0 and S.gdp_delta(math.inf, 1.0) == 1.0


def test_gdp_epsilon_golden_numbers_and_round_trips():
    # Golden: μ = 1 at δ = 1e-5 (dp-accounting's analytic Gaussian with σ = 1/μ; cross-checked below by Cor 2.13).
    assert S.gdp_epsilon(1.0, 1e-5) == pytest.approx(4.377178, abs=1e-6)
    assert S.gdp_epsilon(0.5, 1e-5) == pytest.approx(1.993710, abs=1e-3)
    for mu in (0.1, 0.5, 1.0, 3.0):
        eps = S.gdp_epsilon(mu, 1e-5)
        assert S.gdp_delta(mu, eps) == pytest.approx(1e-5, rel=1e-6)  # our own formula agrees with dp-accounting
        assert S.gdp_mu(eps, 1e-5) == pytest.approx(mu, rel=1e-6)
    assert S.gdp_epsilon(0.0, 1e-5) == 0.0 and S.gdp_epsilon(-1.0, 1e-5) == 0.0
    assert S.gdp_epsilon(math.inf, 1e-5) == math.inf
    assert S.gdp_epsilon(1.0, 1e-3) < S.gdp_epsilon(1.0, 1e-5)  # a larger δ costs less ε
    with pytest.raises(ValueError, match="delta"):
        S.gdp_epsilon(1.0, 0.0)


def test_clt_mu_golden():
    assert S.clt_mu(0.1, 1.0, 100) == pytest.approx(0.1 * math.sqrt(100 * (math.e - 1)), rel=1e-12)
    assert S.clt_mu(1.0, 2.0, 1) == pytest.approx(math.sqrt(math.expm1(0.25)))


def test_llr_scores_closed_form():
    q, sigma = 0.2, 1.5
    # x = 1/2 is where in and out are equally likely at one step.
    assert S.llr_scores(np.array([[0.5]]), q, sigma)[0] == pytest.approx(0.0, abs=1e-12)
    x = np.array([[0.0, 1.0, 2.0]])
    expected = sum(math.log(1 - q + q * math.exp((v - 0.5) / sigma**2)) for v in x[0])
    assert S.llr_scores(x, q, sigma)[0] == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(S.llr_scores(np.array([[1e4]]), q, 0.5)).all()  # no overflow at huge observations


# --- the Gaussian estimate ---------------------------------------------------------------------------------------


def test_standard_error_closed_form_for_normal_scores():
    # Normal scores: Var = v_in/(v_out n_in) + 1/n_out + μ²/(2 n_out).
    assert S.standardized_difference_se(0.5, 500, 500) == pytest.approx(math.sqrt(1 / 500 + 1 / 500 + 0.25 / 1000))
    assert S.standardized_difference_se(0.0, 100, 400, var_ratio=2.0) == pytest.approx(math.sqrt(2 / 100 + 1 / 400))


def _gaussian_mechanism(rng, m: int, sigma: float, reps: int):
    """One-run audit of M(S) = Σ_{j in S} e_j + N(0, σ² I): canary j's coordinate is its score; μ = 1/σ."""
    included = rng.random((reps, m)) < 0.5
    return included, included + sigma * rng.standard_normal((reps, m))


def test_a_plain_gaussian_mechanism_gives_back_its_mu_within_the_interval():
    rng = np.random.default_rng(20)
    sigma, m, reps = 1.25, 1000, 300
    included, x = _gaussian_mechanism(rng, m, sigma, reps)
    covered, lower_ok, lows = 0, 0, []
    for inc, row in zip(included, x):
        est = S.gauss_mu(row[inc], row[~inc], delta=1e-5, confidence=0.95)
        covered += est.interval[0] <= 1 / sigma <= est.interval[1]
        lower_ok += est.mu_lower <= 1 / sigma
        lows.append(est.epsilon_lower)
    # The interval covers μ = 0.8 about 95% of the time (binomial sd of 300 runs: 1.3%) ...
    assert 0.91 <= covered / reps <= 0.99
    # ... the one-sided bound holds at least as often, so ε(μ_lower) stays below the mechanism's ε ...
    assert lower_ok / reps >= 0.93
    assert np.mean(np.array(lows) <= S.gdp_epsilon(1 / sigma, 1e-5)) >= 0.93
    # ... and it is tight: the median bound reaches 70% of the true ε with 1,000 canaries.
    assert np.median(lows) > 0.7 * S.gdp_epsilon(1 / sigma, 1e-5)


def test_subsampled_gaussian_steps_scored_by_likelihood_ratio_recover_the_clt_mu():
    rng = np.random.default_rng(21)
    q, sigma, steps, m = 0.1, 1.0, 100, 1000
    included = rng.random(m) < 0.5
    sampled = (rng.random((m, steps)) < q) & included[:, None]
    scores = S.llr_scores(sampled + sigma * rng.standard_normal((m, steps)), q, sigma)
    est = S.gauss_mu(scores[included], scores[~included], delta=1e-5, confidence=0.99)
    assert est.interval[0] <= S.clt_mu(q, sigma, steps) <= est.interval[1]


def test_bonferroni_widens_the_bound_and_equal_out_scores_are_handled():
    rng = np.random.default_rng(22)
    a, b = 0.5 + rng.standard_normal(400), rng.standard_normal(400)
    one, five = S.gauss_mu(a, b, delta=1e-5), S.gauss_mu(a, b, delta=1e-5, n_tests=5)
    assert five.mu_lower < one.mu_lower and five.mu == one.mu
    flat = S.gauss_mu(np.ones(10), np.zeros(10), delta=1e-5)
    assert flat.mu == math.inf and flat.epsilon_lower == math.inf
    assert S.gauss_mu(np.zeros(10), np.zeros(10), delta=1e-5).epsilon_lower == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        S.gauss_mu([1.0], [0.0, 1.0], delta=1e-5)


# --- the counting bound ---------------------------------------------------------------------------------------


def test_steinke_p_value_and_bound_golden_numbers():
    # Pure DP, every guess right: p = p_ε^r, so the bound is logit(α^(1/r)).
    r, alpha = 100, 0.05
    target = alpha ** (1 / r)
    assert S.steinke_epsilon(r, r, r, alpha=alpha, delta=0.0) == pytest.approx(
        math.log(target / (1 - target)), abs=1e-5
    )
    assert S.steinke_epsilon(r, r, r, alpha=alpha, delta=0.0) == pytest.approx(3.492965, abs=1e-5)
    # At ε = 0 the p-value is a fair-coin tail.
    assert S.steinke_p_value(200, 100, 60, 0.0, 0.0) == pytest.approx(binom.sf(59, 100, 0.5))
    # δ only adds to the p-value (Thm 5.2's second term), so the bound can only drop.
    assert S.steinke_p_value(1000, 100, 90, 1.0, 1e-5) > S.steinke_p_value(1000, 100, 90, 1.0, 0.0)
    assert S.steinke_epsilon(1000, 100, 90, alpha=0.05, delta=1e-3) < S.steinke_epsilon(
        1000, 100, 90, alpha=0.05, delta=0
    )
    assert S.steinke_epsilon(100, 100, 50, alpha=0.05, delta=1e-5) == 0.0  # a coin's worth of right guesses
    with pytest.raises(ValueError, match="v=5"):
        S.steinke_p_value(10, 3, 5, 1.0, 0.0)


def test_steinke_bound_on_scores():
    rng = np.random.default_rng(23)
    separated = S.steinke_bound(np.full(500, 1.0), np.zeros(500), delta=1e-5)
    assert separated.epsilon_lower > 3.0 and separated.correct == separated.guesses_in + separated.guesses_out
    noise = S.steinke_bound(rng.standard_normal(500), rng.standard_normal(500), delta=1e-5)
    assert noise.epsilon_lower < 0.3
    # The counting bound is a proof and looser than the Gaussian estimate on Gaussian scores.
    a, b = 1.0 + rng.standard_normal(500), rng.standard_normal(500)
    assert S.steinke_bound(a, b, delta=1e-5).epsilon_lower < S.gauss_mu(a, b, delta=1e-5).epsilon_lower


def test_gdp_roc_bound_stays_finite_when_out_scores_do_not_vary():
    rng = np.random.default_rng(24)
    # The replay of seeded noise: out differences are exactly 0, in differences positive (2% never sampled).
    replayed = S.gdp_roc_bound(np.r_[np.ones(490), np.zeros(10)], np.zeros(500), delta=1e-5)
    assert 3.0 < replayed.mu_lower < math.inf and replayed.epsilon_lower > 15
    fresh = S.gdp_roc_bound(rng.standard_normal(500), rng.standard_normal(500), delta=1e-5)
    assert fresh.epsilon_lower < 0.5
    # For a Gaussian pair the ROC bound is valid: below μ with high probability.
    assert S.gdp_roc_bound(0.8 + rng.standard_normal(500), rng.standard_normal(500), delta=1e-5).mu_lower < 0.8
