"""Noise calibration, accountant golden numbers, events and their serialization."""

from __future__ import annotations

import math

import dp_accounting
import pytest

from privtrain.errors import UserError
from privtrain.privacy import dp_sgd
from privtrain.privacy.events import (
    dp_sgd_event,
    dumps,
    epsilon_pld,
    epsilon_rdp,
    from_json,
    loads,
    non_private_event,
    to_json,
)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_calibrated_noise_reaches_target_epsilon_within_one_percent(accountant, target):
    plan = dp_sgd.plan(
        n_train=1437,
        batch_size=128,
        epochs=15,
        target_epsilon=target,
        noise_multiplier=None,
        delta=1e-5,
        max_grad_norm=1.0,
        accountant=accountant,
    )
    assert plan.epsilon <= target * 1.0001
    assert plan.epsilon >= target * 0.99
    # q = batch / public training rows (not 1/ceil(n/batch)); 12 steps per epoch
    assert plan.steps == 12 * 15 and plan.sample_rate == pytest.approx(128 / 1437)


def test_golden_accountant_numbers():
    # sigma=1, q=0.01, 1000 steps, delta=1e-5; fixed values (a change means the maths changed)
    assert dp_sgd.epsilon_of(1.0, 0.01, 1000, 1e-5, "rdp") == pytest.approx(2.10137, abs=1e-4)
    assert dp_sgd.epsilon_of(1.0, 0.01, 1000, 1e-5, "prv") == pytest.approx(1.8384, abs=2e-3)
    assert dp_sgd.epsilon_of(1.0, 0.01, 1000, 1e-5, "gdp") == pytest.approx(1.6177, abs=1e-3)


def test_opacus_and_dp_accounting_agree_on_the_same_mechanism():
    event = dp_sgd_event(sample_rate=0.01, noise_multiplier=1.0, steps=1000)
    assert epsilon_rdp([event], 1e-5) == pytest.approx(dp_sgd.epsilon_of(1.0, 0.01, 1000, 1e-5, "rdp"), rel=1e-4)
    assert epsilon_pld([event], 1e-5) == pytest.approx(dp_sgd.epsilon_of(1.0, 0.01, 1000, 1e-5, "prv"), rel=0.02)


def test_events_round_trip_through_json():
    events = [
        dp_sgd_event(sample_rate=0.1, noise_multiplier=1.3, steps=7),
        non_private_event(),
        dp_accounting.LaplaceDpEvent(2.0),
    ]
    assert loads(dumps(events)) == events
    assert from_json(to_json(events[0])) == events[0]
    with pytest.raises(ValueError, match="Unknown DpEvent type"):
        from_json({"type": "os.system"})


def test_full_batch_is_a_plain_gaussian_without_amplification():
    event = dp_sgd_event(sample_rate=1.0, noise_multiplier=2.0, steps=3)
    assert isinstance(event.event, dp_accounting.GaussianDpEvent)


def test_non_private_is_infinite():
    assert epsilon_pld([non_private_event()], 1e-5) == math.inf
    assert epsilon_pld([], 1e-5) == 0.0


def test_delta_default_is_well_below_one_over_n_and_bad_delta_is_refused():
    assert dp_sgd.default_delta(1437) == 1e-5
    assert dp_sgd.default_delta(10**6) <= 1e-7
    with pytest.raises(UserError, match=r"privacy.delta=0.01 must lie in \(0, 1/n\)"):
        dp_sgd.resolve_delta(0.01, 1437)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"target_epsilon": 0.0}, "privacy.target_epsilon=0.0 must be > 0"),
        ({"target_epsilon": -1.0}, "must be > 0"),
        ({"batch_size": 5000}, "recipe.batch_size=5000 is larger than the 1437 training rows"),
        ({"accountant": "moments"}, "privacy.accountant='moments' is unknown"),
        ({"noise_multiplier": 1.0}, "set exactly one of"),
        ({"max_grad_norm": 0.0}, "privacy.max_grad_norm=0.0 must be > 0"),
    ],
)
def test_plan_errors_name_the_field(kwargs, match):
    base = dict(
        n_train=1437,
        batch_size=128,
        epochs=2,
        target_epsilon=3.0,
        noise_multiplier=None,
        delta=1e-5,
        max_grad_norm=1.0,
        accountant="prv",
    )
    with pytest.raises(UserError, match=match):
        dp_sgd.plan(**{**base, **kwargs})
