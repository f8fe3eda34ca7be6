"""The tight PLD estimates shown beside a plan's filter figures, and the largest ε a run could still use.

Kept apart from admission: composing PLDs takes seconds on a long history (cached per budget key), so it
never runs under the write lock. Admission decides with the RDP filter alone; these numbers are what
people read (the plan, the refusal, the model card).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from privtrain.ledger import compose
from privtrain.ledger import filter as rdp_filter
from privtrain.ledger.model import Plan


@dataclass(frozen=True)
class _Planned:
    """The planned run's charge as composition reads it (it has no ledger entry yet)."""

    events_json: str


def estimate(core, plan: Plan) -> Plan:
    """``plan`` with its PLD estimates and the largest ε the run could use filled in.

    Composes PLDs (seconds on long histories, cached per key), so it is never called under the write lock.
    """
    from privtrain.privacy import events as ev

    c, runs = plan.charge, list(plan.runs)
    planned_json = ev.dumps(c.events)
    planned = _Planned(planned_json)
    most: float | None = math.inf
    if plan.budget is not None:
        most = rdp_filter.max_epsilon(
            plan.spent_rdp,
            planned_json,
            budget_epsilon=plan.budget.epsilon,
            budget_delta=plan.budget.delta,
            run_delta=c.delta or plan.budget.delta,
            orders=plan.budget.orders,
        )
    return dataclasses.replace(
        plan,
        spent=core.totals.spent(c.key, runs, plan.delta, plan.upto),
        after=core.totals.after(c.key, runs, planned, plan.delta, plan.upto),
        planned=core.composer.epsilon(
            compose.event_counts([planned_json]), plan.delta, fingerprint=c.source, unit=c.unit
        ),
        max_epsilon=most,
    )
