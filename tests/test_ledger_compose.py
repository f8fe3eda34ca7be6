"""Spent budget is the tight composition of every charged event, checked against fresh dp-accounting
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import functools
import math

import pytest
from ledger_helpers import FP, charge, charging, filter_admits, fresh_pld, gaussian, plan_of, run, sgd

from privtrain import ledger
from privtrain.errors import BudgetExceeded, UserError
from privtrain.ledger import totals


@pytest.fixture
def led(ledger_at):
    return ledger.open(ledger_at)


def test_gaussian_runs_compose_tightly_not_summed(led):
    runs = [gaussian(3.0), gaussian(5.0, steps=2), gaussian(8.0, steps=4)]
    for i, events in enumerate(runs):
        run(led, charge(f"r{i}", events))
    combined = [e for events in runs for e in events]
    spent = led.spent("patients")
    assert spent == pytest.approx(fresh_pld(combined, 1e-5), rel=1e-6)
    naive = sum(fresh_pld(list(e), 1e-5) for e in runs)
    assert spent < naive - 0.5  # composition is much tighter than the sum
    (summary,) = led.sources()
    assert summary.naive_sum == pytest.approx(naive, rel=1e-9)
    assert summary.n_runs == 3 and summary.budget is None and summary.remaining is None
    assert summary.filter_epsilon is None  # no budget: nothing to admit against


@pytest.mark.slow
@pytest.mark.parametrize("n_runs", [2, 3])
def test_dp_sgd_runs_compose_to_fresh_pld(led, n_runs):
    runs = [sgd(0.5, 2.0, 5), sgd(0.3, 1.5, 8), sgd(1.0, 4.0, 3)][:n_runs]  # noise, sampling, steps all differ
    led.set_budget(FP, "example", 50.0, 1e-6)
    for i, events in enumerate(runs):
        run(led, charge(f"r{i}", events))
    combined = [e for events in runs for e in events]
    expected = fresh_pld(combined, 1e-6)  # at the budget's δ, not the runs' δ
    assert led.spent(FP) == pytest.approx(expected, rel=1e-6)
    # remaining is what the admission filter leaves: never more than PLD would
    assert led.remaining(FP) == pytest.approx(50.0 - led.filter_epsilon(FP), rel=1e-9)
    assert led.filter_epsilon(FP) >= expected
    naive = sum(fresh_pld(list(e), 1e-6) for e in runs)
    assert expected < naive


def test_budget_refuses_the_run_that_does_not_fit(led):
    led.set_budget(FP, "example", 3.0, 1e-5)
    assert filter_admits(1, 4.0, 3.0, 1e-5) and not filter_admits(1, 1.0, 3.0, 1e-5)
    run(led, charge("r1", gaussian(4.0)))
    with pytest.raises(BudgetExceeded) as info:
        with charging(led, charge("r2", gaussian(1.0))):
            pytest.fail("the body must not run when the plan does not fit")
    msg = str(info.value)
    assert "\n" not in msg
    for part in (
        "spent ε=",
        "remaining ε=",
        "largest this run could still use is ε=",
        "Nothing was charged",
        "admission filter",
        "privtrain ledger budget set patients --epsilon E --delta 1e-05",
    ):
        assert part in msg
    assert [e.status for e in led.entries()] == ["budget", "reserved", "committed"]


def test_max_epsilon_is_usable(led):
    led.set_budget(FP, "example", 3.0, 1e-5)
    run(led, charge("r1", gaussian(5.0)))
    plan = plan_of(led, charge("r2", gaussian(1.0)))[0]
    assert not plan.fits and 0 < plan.max_epsilon < 3.0
    # a Gaussian run re-noised to exactly max_epsilon fits; 10% more does not
    import dp_accounting

    def sigma_for(eps):
        return dp_accounting.pld.accountant.get_smallest_gaussian_noise(
            dp_accounting.pld.common.DifferentialPrivacyParameters(eps, 1e-5), 1
        )

    assert plan_of(led, charge("r3", gaussian(sigma_for(plan.max_epsilon)))).fits
    assert not plan_of(led, charge("r4", gaussian(sigma_for(plan.max_epsilon * 1.1)))).fits


@functools.cache
def _pld_count(sigma: float, budget: float) -> int:
    """How many runs PLD alone would admit (the oracle is slow: computed once for both backends)."""
    return max(k for k in range(1, 50) if fresh_pld(list(gaussian(sigma) * k), 1e-5) <= budget)


def test_admission_follows_the_rdp_filter_not_pld(led):
    """Stricter than PLD by design: PLD's 'natural filter' is not valid for adaptively chosen runs."""
    sigma, budget = 3.0, 4.0
    by_filter = max(k for k in range(1, 50) if filter_admits(k, sigma, budget, 1e-5))
    by_pld = _pld_count(sigma, budget)
    assert 1 <= by_filter < by_pld
    led.set_budget(FP, "example", budget, 1e-5)
    for i in range(by_filter):
        run(led, charge(f"r{i}", gaussian(sigma)))
    with pytest.raises(BudgetExceeded):
        with charging(led, charge("one-more", gaussian(sigma))):
            pass
    assert led.spent(FP) < budget  # PLD alone would still have admitted it
    assert led.filter_epsilon(FP) <= budget


def test_failed_run_stays_charged_at_reservation_and_commit_replaces_it(led):
    with pytest.raises(RuntimeError, match="boom"):
        with charging(led, charge("crash", gaussian(2.0))):
            raise RuntimeError("boom")
    with charging(led, charge("short", gaussian(3.0, steps=4))) as r:
        r.commit(gaussian(3.0, steps=1), artifacts={"model.pt": "ff" * 32})  # stopped early: 1 of 4 steps
    statuses = [(e.run_id, e.status) for e in led.entries()]
    assert statuses == [("crash", "reserved"), ("crash", "failed"), ("short", "reserved"), ("short", "committed")]
    assert led.spent("patients") == pytest.approx(fresh_pld(list(gaussian(2.0) + gaussian(3.0)), 1e-5), rel=1e-6)
    assert led.entries()[-1].artifacts == {"model.pt": "ff" * 32}


def test_non_private_refused_on_budget_unless_allowed(led):
    led.set_budget(FP, "example", 5.0, 1e-5)
    from privtrain.privacy.events import non_private_event

    np_charge = charge("baseline", (non_private_event(),), epsilon=math.inf)
    with pytest.raises(UserError, match="allow_non_private") as info:
        with charging(led, np_charge):
            pass
    assert not isinstance(info.value, BudgetExceeded)
    assert led.spent(FP) == 0.0
    run(led, charge("baseline", (non_private_event(),), epsilon=math.inf, allow_non_private=True))
    assert math.isinf(led.spent(FP)) and led.remaining(FP) == 0.0
    with pytest.raises(BudgetExceeded, match="spent for good"):  # nothing private is left after it
        with charging(led, charge("r2", gaussian(10.0))):
            pass


def test_no_budget_is_tracked_not_enforced_and_default_budget_applies_once(led):
    run(led, charge("r1", gaussian(0.5)))  # ε ≈ 10: fine without a budget
    assert led.remaining(FP) is None and led.spent(FP) > 5
    c = charge("r2", gaussian(5.0), fp="ab" * 32, name="clinic", default_budget=(2.0, 1e-6))
    run(led, c)
    assert led.budget("clinic").epsilon == 2.0 and led.budget("clinic").delta == 1e-6
    run(led, charge("r3", gaussian(50.0), fp="ab" * 32, name="clinic", default_budget=(9.0, 1e-6)))
    assert led.budget("clinic").epsilon == 2.0  # the default only applies on first use
    with pytest.raises(UserError, match="budget epsilon"):
        charge("r4", default_budget=(-1.0, 1e-6))


def test_units_are_separate_budgets(led):
    led.set_budget(FP, "example", 1.0, 1e-5)
    run(led, charge("r1", gaussian(6.0)))
    run(led, charge("fl", gaussian(1.0), unit="client", scope="pop1"))  # no client budget: not enforced
    assert led.spent(FP, "client", "pop1") > led.budget(FP, "example").epsilon
    assert led.spent(FP, "example") < 1.0
    with pytest.raises(UserError, match="unit"):
        charge("bad", unit="row")


def test_stored_totals_are_used_incremental_and_never_stale(led, monkeypatch):
    run(led, charge("r1", gaussian(3.0)))
    first = led.sources()
    calls = []
    real = totals.compose_onto
    monkeypatch.setattr(totals, "compose_onto", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert led.sources() == first and calls == []  # served from the stored total
    led._conn.execute("UPDATE cache SET value = 0.001")  # a forged or stale cached value ...
    led._conn.execute("UPDATE pld_totals SET epsilons = '{\"1e-05\": 0.001}'")
    run(led, charge("r2", gaussian(3.0)))  # ... covers other charges, so a new charge cannot hit it
    assert led.spent(FP) == pytest.approx(fresh_pld(list(gaussian(3.0) * 2), 1e-5), rel=1e-6)
    base, missing = calls[0][0], calls[0][1]
    assert base is not None and [r.run_id for r in missing] == ["r2"]  # only the new run composed onto the total


def test_run_handle_and_plan_render(led):
    led.set_budget(FP, "example", 6.0, 1e-5)
    c = charge("r1", gaussian(3.0))
    text = plan_of(led, c).render()
    assert "budget:       ε=6 at δ=1e-05" in text and "verdict:      fits" in text and "filter:" in text
    assert led.entries()[-1].status == "budget"  # plan touched nothing
    with charging(led, c) as r:
        assert r.run_id == "r1" and r.plan.fits and r.entry_id == 2
        (entry,) = r.commit(c.events)
    assert entry.ref == 2 and entry.epsilon == pytest.approx(c.epsilon)
    e = led.entries()[1]
    assert e.user and e.time.endswith("+00:00") and e.config_hash == "cfg-r1" and e.source_name == "patients"
    assert e.rdp == pytest.approx([a / (2 * 3.0**2) for a in ledger.filter.ORDERS])  # chained RDP curve
