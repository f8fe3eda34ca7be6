"""The shipped dp_sgd defaults on breast_cancer (the table where they were re-chosen, issue 21) keep the planned
guarantee: the noise is calibrated to the asked ε from public values only, and the ledger's tight PLD accounting
of the same events agrees. Planning reads no training row and charges nothing, so this runs in about a second."""

from __future__ import annotations

import pytest

from privtrain import config
from privtrain.privacy.events import epsilon_pld
from privtrain.recipes import dp_sgd


def _plan(*overrides: str):
    return dp_sgd.plan(config.settings("dp_sgd", config.compose("dp_sgd", ["dataset=breast_cancer", *overrides])))


@pytest.mark.parametrize("eps", [1.0, 3.0])
def test_the_shipped_defaults_plan_the_asked_epsilon_from_the_public_size(eps):
    planned = _plan(f"privacy.target_epsilon={eps}")
    dp = planned.dp
    # 569 published rows x (1 - test_size 0.2) = 455 public training rows; never the rows read
    assert planned.public_rows == 455
    assert dp.sample_rate == pytest.approx(planned.train.batch_size / 455)
    assert dp.steps == planned.train.epochs * -(-455 // planned.train.batch_size)
    # calibrated within 1% below the target by the run's accountant ...
    assert 0.99 * eps <= dp.epsilon <= eps
    # ... and the ledger's tight PLD composition of the very events it charges agrees
    assert epsilon_pld(list(dp.events), dp.delta) == pytest.approx(eps, rel=0.02)
    assert dp.delta == 1e-5
