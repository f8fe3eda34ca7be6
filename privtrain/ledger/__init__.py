"""The privacy ledger: every run's privacy loss, per data source and unit, composed tightly.

A budget protects people, so it belongs to a data source (see :mod:`privtrain.sources`). Runs
describe what they do (an :class:`Access`, in a :class:`RunRequest` built once per run); the ledger's one
door, :meth:`Ledger.charging`, builds their charges (every source whose rows they touch), checks each
against the run's policy, admits them with an RDP filter that stays valid under adaptive choice, reserves
them in one transaction, and records what they committed. People read it with ``privtrain ledger``.

Example:
    >>> from privtrain import ledger
    >>> book = ledger.open()                                  # doctest: +SKIP
    >>> request = ledger.RunRequest.of("dp_sgd", access, config_hash=h, ledger=settings)  # doctest: +SKIP
    >>> print(book.plan(request).render())                    # doctest: +SKIP
    >>> with book.charging(request) as run:                   # doctest: +SKIP
    ...     run.commit({"example": actual_events}, artifacts={"model.pt": sha256})
    >>> book.spent("digits"), book.remaining("digits")        # doctest: +SKIP

This package never imports torch, flwr or sdv, and imports dp-accounting (and pandas, to hash a
table's rows) only when it has to.
"""

from privtrain.ledger.admission import RunPlan
from privtrain.ledger.api import Ledger, default_path, open
from privtrain.ledger.model import (
    UNITS,
    Access,
    Budget,
    Charge,
    Entry,
    LedgerSettings,
    Lineage,
    Link,
    Mechanism,
    Plan,
    Population,
    RunRequest,
    SourceSummary,
    VerifyReport,
)
from privtrain.ledger.run import Run

__all__ = [
    "UNITS",
    "Access",
    "Budget",
    "Charge",
    "Entry",
    "Ledger",
    "LedgerSettings",
    "Lineage",
    "Link",
    "Mechanism",
    "Plan",
    "Population",
    "Run",
    "RunPlan",
    "RunRequest",
    "SourceSummary",
    "VerifyReport",
    "default_path",
    "open",
]
