"""The example-level event charged for central DP-FedAvg dominates the real mechanism toward one example.

Changing one example of client k moves k's clipped update from a to b (|a|, |b| <= C, |a - b| <= 2C);
k participates with the same Bernoulli(q) draw either way. One release is therefore, at worst, the pair
((1-q) N(0) + q N(-C), (1-q) N(0) + q N(C)) with noise sigma*C. We integrate its hockey-stick divergence
numerically and check that the delta dp-accounting's PLD gives for the event privtrain charges is never
smaller: the way an auditor would check the adjacency argument.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from privtrain.federated.central import example_round_event

XS = np.linspace(-40.0, 40.0, 200_001)


def _hockey_stick(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    return float(np.sum(np.maximum(p - np.exp(eps) * q, 0.0)) * (XS[1] - XS[0]))


def _substitution_delta(sigma: float, q: float, eps: float) -> float:
    p = (1 - q) * norm.pdf(XS, 0, sigma) + q * norm.pdf(XS, -1, sigma)
    p2 = (1 - q) * norm.pdf(XS, 0, sigma) + q * norm.pdf(XS, 1, sigma)
    return max(_hockey_stick(p, p2, eps), _hockey_stick(p2, p, eps))


def _charged_delta(event, eps: float) -> float:
    from dp_accounting.pld import PLDAccountant

    return PLDAccountant(value_discretization_interval=1e-3).compose(event).get_delta(eps)


GRID = [(sigma, q) for sigma in (0.8, 2.0) for q in (0.05, 0.3, 1.0)]


@pytest.mark.parametrize("sigma,q", GRID)
def test_the_charged_event_dominates_one_release_toward_one_example(sigma, q):
    event = example_round_event(sigma, q, "poisson")
    for eps in (0.25, 1.0, 2.0):
        assert _charged_delta(event, eps) >= _substitution_delta(sigma, q, eps) - 1e-9


def test_the_check_has_teeth_charging_sensitivity_c_would_under_count():
    import dp_accounting

    wrong = dp_accounting.PoissonSampledDpEvent(0.3, dp_accounting.GaussianDpEvent(2.0))  # sigma, not sigma/2
    assert _charged_delta(wrong, 1.0) < _substitution_delta(2.0, 0.3, 1.0) - 1e-4
