"""Post-processing is free: runs on registered synthetic data add nothing to the parent (SQLite and PostgreSQL)."""

from __future__ import annotations

import math

import pytest
from ledger_helpers import FP, FP2, charge, gaussian, plan_of, run

from privtrain import ledger
from privtrain.errors import UserError
from privtrain.privacy.events import non_private_event


@pytest.fixture
def led(ledger_at):
    led = ledger.open(ledger_at)
    led.set_budget(FP, "example", 4.0, 1e-5)
    synth = charge("synth-1", gaussian(3.0))
    run(led, synth)  # the DP synthesizer's run is charged to the parent
    led.register_derived(FP2, "digits-synth", FP, "synth-1", synth.events, synth.epsilon, 1e-5, "example")
    return led


def test_run_on_derived_data_adds_nothing_to_parent(led):
    spent, n = led.spent(FP), len(led.entries(FP))
    for i in range(3):  # far more than the parent's budget would allow
        c = charge(f"on-synth-{i}", gaussian(1.0), fp=FP2, name="digits-synth", parent=FP)
        plan = plan_of(led, c)
        assert plan.fits and plan[0].lineage.parent == FP
        text = plan.render()
        assert "inherits ε=" in text and "add no charge to the parent" in text
        run(led, c)
    assert led.spent(FP) == spent and len(led.entries(FP)) == n
    assert len(led.entries(FP2)) == 1 + 2 * 3  # the lineage entry + each run's reserve/commit
    child = next(s for s in led.sources() if s.source == FP2)
    assert child.lineage.epsilon == pytest.approx(led.entries(FP)[1].epsilon) and child.budget is None


def test_fingerprint_alone_finds_the_lineage(led):
    run(led, charge("plain", gaussian(1.0), fp=FP2, name="digits-synth"))  # no parent given
    assert plan_of(led, charge("again", fp=FP2))[0].lineage.parent == FP
    assert led.spent(FP) < 2.0


def test_non_dp_synthesizer_inherits_infinite_epsilon(led):
    fp3 = "f3" * 32
    lin = led.register_derived(fp3, "digits-sdv", FP, "sdv-1", [non_private_event()], 0.0, 0.0, "example")
    assert math.isinf(lin.epsilon)
    assert "inherits ε=inf" in plan_of(led, charge("r", fp=fp3, parent=FP)).render()


def test_unregistered_parent_is_refused(led):
    with pytest.raises(UserError, match="not registered as derived"):
        plan_of(led, charge("r", fp="c4" * 32, parent=FP))
