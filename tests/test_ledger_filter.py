"""The RDP privacy filter (privtrain.ledger.filter), checked against independent oracles.

Oracles: the closed-form RDP of the Gaussian mechanism (α/2σ²), thresholds computed
by hand, fresh dp-accounting RdpAccountant / PLDAccountant objects, and
dp-accounting's own mechanism calibration.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import dp_accounting as dpa
import numpy as np
import pytest

from privtrain.ledger import filter as flt
from privtrain.privacy import events as ev

ORDERS = flt.ORDERS
EPS_B, DELTA_B = 8.0, 1e-5
Q, STEPS = 1 / 12, 360
SIGMA_EPS1 = 6.0  # DP-SGD (q=1/12, 360 steps) with PLD ε ≈ 1.00 at δ=1e-5
ZEROS = (0.0,) * len(ORDERS)


def hand_thresholds(eps, delta, orders=ORDERS):
    return [eps - math.log(len(orders) / delta) / (a - 1) for a in orders]


def oracle_rdp(events, orders=ORDERS):
    acc = dpa.rdp.RdpAccountant(orders=list(orders))
    acc.compose(dpa.ComposedDpEvent(list(events)))
    return [float(x) for x in acc._rdp]


def pld_epsilon(event, delta):
    acc = dpa.pld.PLDAccountant()
    acc.compose(event)
    return acc.get_epsilon(delta)


def invariant_holds(spent, eps=EPS_B, delta=DELTA_B, tol=0.0):
    return any(s <= t + tol for s, t in zip(spent, hand_thresholds(eps, delta)))


def dp_sgd(sigma, steps=STEPS, q=Q):
    return ev.dp_sgd_event(sample_rate=q, noise_multiplier=sigma, steps=steps)


# --- grid and import ----------------------------------------------------------


def test_orders_grid():
    assert 12 <= len(ORDERS) <= 20
    assert list(ORDERS) == sorted(set(ORDERS)) and min(ORDERS) > 1 and max(ORDERS) >= 64
    assert {1.5, 1.75, 2.5} <= set(ORDERS)


def test_import_does_not_load_dp_accounting():
    code = "import sys, privtrain.ledger.filter; print('dp_accounting' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# --- rdp_curve ----------------------------------------------------------------


def test_gaussian_golden():
    expected = [10 * a / (2 * 2.0**2) for a in ORDERS]
    for events in ([dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(2.0), 10)], [dpa.GaussianDpEvent(2.0)] * 10):
        assert flt.rdp_curve(events) == pytest.approx(expected, rel=1e-12)


def test_thresholds_golden():
    got = flt.thresholds(8.0, 1e-5)
    assert got == pytest.approx([8.0 - math.log(len(ORDERS) * 1e5) / (a - 1) for a in ORDERS], rel=1e-12)
    assert flt.thresholds(8, 1e-5, orders=[2, 3]) == pytest.approx([8 - math.log(2e5), 8 - math.log(2e5) / 2])
    with pytest.raises(ValueError):
        flt.thresholds(8.0, 0.0)
    with pytest.raises(ValueError):
        flt.thresholds(8.0, 1e-5, orders=[1.0, 2.0])


def test_poisson_sampled_matches_fresh_accountant():
    events = [dp_sgd(1.1), ev.dp_sgd_event(sample_rate=0.01, noise_multiplier=0.9, steps=1000), dpa.LaplaceDpEvent(3.0)]
    assert flt.rdp_curve(events) == pytest.approx(oracle_rdp(events), rel=1e-12)
    orders = (2.0, 4.0, 32.0)
    assert flt.rdp_curve(events, orders) == pytest.approx(oracle_rdp(events, orders), rel=1e-12)


def test_json_input_and_special_events():
    events = [dp_sgd(1.1), dpa.GaussianDpEvent(3.0)]
    assert flt.rdp_curve(ev.dumps(events)) == flt.rdp_curve(events)
    assert flt.rdp_curve(tuple(events)) == flt.rdp_curve(events)
    assert flt.rdp_curve([dpa.NonPrivateDpEvent()]) == (math.inf,) * len(ORDERS)
    nested = dpa.ComposedDpEvent([dpa.GaussianDpEvent(1.0), dpa.NonPrivateDpEvent()])
    assert flt.rdp_curve(ev.dumps([nested])) == (math.inf,) * len(ORDERS)
    assert flt.rdp_curve([dpa.NoOpDpEvent()]) == ZEROS
    assert flt.rdp_curve([]) == ZEROS and flt.rdp_curve("[]") == ZEROS


def test_unsupported_event_raises_naming_it():
    with pytest.raises(ValueError, match="SampledWithoutReplacementDpEvent"):
        flt.rdp_curve([dpa.SampledWithoutReplacementDpEvent(100, 10, dpa.GaussianDpEvent(1.0))])
    with pytest.raises(ValueError, match="UnsupportedDpEvent"):
        flt.rdp_curve([dpa.GaussianDpEvent(1.0), dpa.UnsupportedDpEvent()])


def test_rdp_curve_is_cached():
    text = ev.dumps([dp_sgd(1.7, steps=123)])
    first = flt.rdp_curve(text)
    hits = flt.rdp_curve.cache_info().hits
    assert flt.rdp_curve(text) is first
    assert flt.rdp_curve([dp_sgd(1.7, steps=123)]) is first  # events map to the same canonical key
    assert flt.rdp_curve.cache_info().hits == hits + 2


# --- add / admits / certified_epsilon -------------------------------------------


def test_add():
    assert flt.add([1.0, 2.0], (0.5, math.inf), [0.0, 1.0]) == (1.5, math.inf)
    assert flt.add((1.0,)) == (1.0,)
    with pytest.raises(ValueError):
        flt.add([1.0], [1.0, 2.0])


def test_certified_epsilon_is_never_tighter_than_pld():
    compositions = [
        dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(2.0), 10),
        dpa.SelfComposedDpEvent(dp_sgd(1.1), 3),
        dpa.ComposedDpEvent(
            [ev.dp_sgd_event(sample_rate=0.01, noise_multiplier=1.0, steps=1000), dpa.LaplaceDpEvent(2.0)]
        ),
        dpa.SelfComposedDpEvent(dp_sgd(SIGMA_EPS1), 20),
    ]
    for event in compositions:
        certified = flt.certified_epsilon(flt.rdp_curve([event]), budget_delta=DELTA_B)
        assert certified >= pld_epsilon(event, DELTA_B)
    typical = dpa.SelfComposedDpEvent(dp_sgd(1.1), 3)
    ratio = flt.certified_epsilon(flt.rdp_curve([typical]), budget_delta=DELTA_B) / pld_epsilon(typical, DELTA_B)
    assert 1.0 <= ratio < 2.0


def test_certified_epsilon_edges():
    assert flt.certified_epsilon(ZEROS, budget_delta=DELTA_B) == 0.0
    assert flt.certified_epsilon([math.inf] * len(ORDERS), budget_delta=DELTA_B) == math.inf
    spent = [math.inf] * len(ORDERS)
    spent[3] = 1.0  # finite at one order only
    assert flt.certified_epsilon(spent, budget_delta=DELTA_B) == pytest.approx(
        1.0 + math.log(len(ORDERS) / DELTA_B) / (ORDERS[3] - 1)
    )


def test_identical_runs_filter_count_vs_pld_count():
    run = dp_sgd(SIGMA_EPS1)
    assert 0.95 < ev.epsilon_pld([run], DELTA_B) < 1.05
    curve = flt.rdp_curve([run])
    spent, n = list(ZEROS), 0
    while flt.admits(spent, curve, budget_epsilon=EPS_B, budget_delta=DELTA_B):
        spent, n = list(flt.add(spent, curve)), n + 1
        assert n < 1000
    assert n == 24  # figure reported for the (8, 1e-5) budget
    # refusal at n+1 agrees with a fresh accountant on the composed n+1 runs
    assert not invariant_holds(oracle_rdp([dpa.SelfComposedDpEvent(run, n + 1)]))
    assert invariant_holds(oracle_rdp([dpa.SelfComposedDpEvent(run, n)]), tol=1e-9)
    assert flt.certified_epsilon(spent, budget_delta=DELTA_B) <= EPS_B
    assert pld_epsilon(dpa.SelfComposedDpEvent(run, n), DELTA_B) <= EPS_B

    def pld_fits(m):
        return pld_epsilon(dpa.SelfComposedDpEvent(run, m), DELTA_B) <= EPS_B

    lo, hi = n, 4 * n  # PLD admits lo, not hi
    assert not pld_fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pld_fits(mid) else (lo, mid)
    pld_count = lo
    assert pld_count >= n
    assert pld_count == 39  # figure reported: PLD (not valid adaptively) would admit 39


def test_non_private_is_never_admitted():
    inf = flt.rdp_curve([ev.non_private_event()])
    assert not flt.admits(ZEROS, inf, budget_epsilon=1e9, budget_delta=0.5)
    assert not flt.admits(inf, ZEROS, budget_epsilon=1e9, budget_delta=0.5)


# --- adaptive adversaries -------------------------------------------------------


MENU = [dp_sgd(s, steps=100) for s in (0.8, 1.1, 1.5, 2.0, 3.0, 5.0, 8.0)]


def _gaussian(sigma):
    return dpa.GaussianDpEvent(float(f"{sigma:.2g}"))  # rounded: repeated σ hit the cache


def _filling(spent):
    """A Gaussian whose RDP exactly fills the order with the most slack (a boundary case)."""
    slack = [t - s for s, t in zip(spent, hand_thresholds(EPS_B, DELTA_B))]
    i = int(np.argmax(slack))
    if slack[i] <= 0:
        return dpa.GaussianDpEvent(1.0)
    return dpa.GaussianDpEvent(math.sqrt(ORDERS[i] / (2 * slack[i])))


def _play(choose, rng, proposals=30, on_decision=lambda ok: None):
    """One adaptive game; checks the filter's invariants after every decision."""
    spent, admitted, refusals = list(ZEROS), [], 0
    for _ in range(proposals):
        event = choose(spent, rng)
        planned = flt.rdp_curve([event])
        before = list(spent)
        ok = flt.admits(spent, list(planned), budget_epsilon=EPS_B, budget_delta=DELTA_B)
        assert spent == before  # admits is pure: a refused run changes nothing
        on_decision(ok)
        if isinstance(event, dpa.NonPrivateDpEvent):
            assert not ok
        if not ok:
            refusals += 1
            continue
        spent = list(flt.add(spent, planned))
        admitted.append(event)
        assert invariant_holds(spent)
        assert flt.certified_epsilon(spent, budget_delta=DELTA_B) <= EPS_B
    if admitted:  # against a fresh accountant on everything admitted
        assert invariant_holds(oracle_rdp(admitted), tol=1e-9)
    return admitted, refusals


def test_adaptive_greedy_adversary_is_stopped():
    state = {"ask": 1.0}  # grows after each admission, shrinks after each refusal

    def greedy(spent, rng):  # noise from the remaining budget, ever more aggressive
        remaining = EPS_B - flt.certified_epsilon(spent, budget_delta=DELTA_B)
        return _gaussian(1.0 / math.sqrt(state["ask"] * max(remaining, 1e-6)))

    def learn(ok):
        state["ask"] *= 1.5 if ok else 0.5

    admitted, refusals = _play(greedy, None, proposals=40, on_decision=learn)
    assert len(admitted) > 3 and refusals > 3


def test_adaptive_alternating_and_filling_adversaries_are_stopped():
    turn = itertools.count(1)

    def alternate(spent, rng):  # very cheap, then expensive, and again
        return _gaussian(30.0) if next(turn) % 2 else _gaussian(2.5)

    admitted, refusals = _play(alternate, None)
    assert refusals > 0 and any(e.noise_multiplier == 30.0 for e in admitted)
    admitted, _ = _play(lambda spent, rng: _filling(spent), None, proposals=10)
    assert admitted


def test_randomized_adaptive_adversary_200_trials():
    rng = np.random.default_rng(20240611)

    def choose(spent, rng):
        u = rng.random()
        if u < 0.05:
            return dpa.NonPrivateDpEvent()
        if u < 0.10:
            return dpa.NoOpDpEvent()
        if u < 0.20:
            return _filling(spent)
        if u < 0.45:
            return MENU[int(rng.integers(len(MENU)))]
        if u < 0.55:
            return dpa.LaplaceDpEvent(float(f"{10 ** rng.uniform(0, 1.5):.2g}"))
        remaining = EPS_B - flt.certified_epsilon(spent, budget_delta=DELTA_B)
        if rng.random() < 0.5:  # noise from the remaining budget
            return _gaussian(rng.uniform(1.0, 8.0) / math.sqrt(max(remaining, 1e-3)))
        return _gaussian(10 ** rng.uniform(-0.5, 1.5))

    total_refusals = 0
    for _ in range(200):
        _, refusals = _play(choose, rng, proposals=25)
        total_refusals += refusals
    assert total_refusals > 200


# --- max_epsilon ----------------------------------------------------------------


def _sigma_for(epsilon, steps):
    """Oracle: dp-accounting's own calibration of DP-SGD noise to a PLD ε."""
    return dpa.calibrate_dp_mechanism(
        dpa.pld.PLDAccountant,
        lambda s: dp_sgd(s, steps=steps),
        epsilon,
        DELTA_B,
        bracket_interval=dpa.ExplicitBracketInterval(2.0, 8.0),
        tol=1e-5,
    )


def test_max_epsilon_empty_budget_is_tight():
    budget = dict(budget_epsilon=3.0, budget_delta=DELTA_B)  # a small budget keeps the PLD oracle fast
    planned = [dp_sgd(1.0)]
    eps = flt.max_epsilon(ZEROS, planned, run_delta=DELTA_B, **budget)
    assert 0 < eps < 3.0
    assert flt.max_epsilon(ZEROS, ev.dumps(planned), run_delta=DELTA_B, **budget) == eps
    at = flt.rdp_curve([dp_sgd(_sigma_for(eps, STEPS))])
    above = flt.rdp_curve([dp_sgd(_sigma_for(1.05 * eps, STEPS))])
    assert flt.admits(ZEROS, at, **budget)
    assert not flt.admits(ZEROS, above, **budget)


def test_max_epsilon_with_spent_budget():
    spent = flt.rdp_curve([dpa.SelfComposedDpEvent(dp_sgd(SIGMA_EPS1), 10)])
    planned = [dp_sgd(SIGMA_EPS1)]
    eps = flt.max_epsilon(spent, planned, budget_epsilon=EPS_B, budget_delta=DELTA_B, run_delta=DELTA_B)
    assert eps > 1.0  # 10 of the 24 ε≈1 runs spent: room for more than one more
    empty = flt.max_epsilon(ZEROS, planned, budget_epsilon=EPS_B, budget_delta=DELTA_B, run_delta=DELTA_B)
    assert eps < empty


def test_max_epsilon_nothing_fits_or_nothing_to_scale():
    planned = [dp_sgd(1.1)]
    over = [t + 1.0 for t in flt.thresholds(EPS_B, DELTA_B)]
    assert flt.max_epsilon(over, planned, budget_epsilon=EPS_B, budget_delta=DELTA_B, run_delta=DELTA_B) == 0.0
    # a fixed unscalable part that alone exceeds the budget: even k=1e4 does not fit
    heavy = [dpa.ComposedDpEvent([dpa.GaussianDpEvent(1.0), dpa.ZCDpEvent(rho=10.0)])]
    assert flt.max_epsilon(ZEROS, heavy, budget_epsilon=EPS_B, budget_delta=DELTA_B, run_delta=DELTA_B) == 0.0
    kw = dict(budget_epsilon=EPS_B, budget_delta=DELTA_B, run_delta=DELTA_B)
    assert flt.max_epsilon(ZEROS, [ev.non_private_event()], **kw) is None
    assert flt.max_epsilon(ZEROS, ev.dumps([dp_sgd(1.0), ev.non_private_event()]), **kw) is None
    assert flt.max_epsilon(ZEROS, [dpa.NoOpDpEvent()], **kw) is None
