"""The privacy ledger: every run's privacy loss, per dataset and unit, composed tightly.

Recipes plan, reserve and commit through it; people read it with ``privtrain ledger``.

Example:
    >>> from privtrain import ledger
    >>> led = ledger.open()                          # doctest: +SKIP
    >>> plan = led.plan(charge); print(plan.render()) # doctest: +SKIP
    >>> with led.charging(charge) as run:             # doctest: +SKIP
    ...     run.commit(actual_events, artifacts={"model.pt": sha256})
    >>> led.spent("digits"), led.remaining("digits")  # doctest: +SKIP

This package never imports torch, flwr or sdv, and imports dp-accounting only
when it has to compose events.
"""

from privtrain.ledger.api import Ledger, default_path, open
from privtrain.ledger.charging import Run
from privtrain.ledger.model import (
    UNITS, Budget, Charge, DatasetSummary, Entry, Lineage, Plan, VerifyReport,
)

__all__ = [
    "UNITS", "Budget", "Charge", "DatasetSummary", "Entry", "Ledger", "Lineage", "Plan", "Run",
    "VerifyReport", "default_path", "open",
]
