"""Admission: plan a run's charges against their budgets, refuse or reserve them in one transaction.

Runs are admitted by an RDP privacy filter (:mod:`privtrain.ledger.filter`), which stays valid when
runs are chosen adaptively; the tight PLD composition is the reported estimate of spend, shown
beside it. A non-private run on a budgeted source needs ``allow_non_private``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from privtrain.errors import BudgetExceeded, UserError
from privtrain.ledger import compose, stale
from privtrain.ledger import filter as rdp_filter
from privtrain.ledger.model import Budget, Charge, Plan
from privtrain.ledger.run import Run, entry_fields

OVER_BUDGET = "over budget"


@dataclass(frozen=True)
class RunPlan:
    """The plans of every charge of one run."""

    plans: tuple[Plan, ...]

    @property
    def fits(self) -> bool:
        return all(p.fits for p in self.plans)

    def __iter__(self):
        return iter(self.plans)

    def __getitem__(self, i: int) -> Plan:
        return self.plans[i]

    def __len__(self) -> int:
        return len(self.plans)

    def render(self) -> str:
        from privtrain.ledger.render import render_plan

        return "\n".join(render_plan(p) for p in self.plans)


def plan_charge(book, charge: Charge) -> Plan:
    """The pre-flight for one charge: its budget, the filter before and after, and the verdict."""
    from privtrain.privacy import events as ev

    source, unit, scope = charge.key
    lineage = book.lineage(charge.fingerprint) if charge.fingerprint else None
    if charge.parent is not None and (lineage is None or lineage.parent != charge.parent):
        raise UserError(f"table {charge.fingerprint[:12] if charge.fingerprint else '?'} is not registered as "
                        f"derived from source {charge.parent!r}; register_derived() it when the synthetic data "
                        "is written.")
    budget = book._budget(source, unit, scope)
    is_default = False
    if budget is None and charge.default_budget is not None and lineage is None:
        budget, is_default = Budget(*charge.default_budget, None, rdp_filter.ORDERS), True
    state = book._state(source, unit, scope)
    runs, upto = state.runs, state.last_id
    planned_json = ev.dumps(charge.events)
    delta = compose.reporting_delta(budget.delta if budget else None, runs, charge.delta or None) or 1e-5
    planned_counts = compose.event_counts([planned_json])
    plan = Plan(charge, budget, delta, lineage, is_default, len(runs))
    planned = compose.RunCharge(0, charge.run_id, "planned", planned_json, charge.epsilon, charge.delta, None)
    key, epsilon = charge.key, book._composer.epsilon
    # PLD figures are estimates for people, computed on first use (never under the write lock): the stored
    # total of the key's charges, extended with what it misses, and this run composed onto it
    plan._spent = lambda: book._totals.spent(key, runs, delta, upto)
    plan._after = lambda: book._totals.after(key, runs, planned, delta, upto)
    plan._planned = lambda: epsilon(planned_counts, delta, fingerprint=source, unit=unit)
    plan._max_epsilon = lambda: math.inf
    if budget is None:
        return plan
    orders = budget.orders
    spent_rdp = book._filter_sum(source, unit, scope, orders)
    planned_rdp = rdp_filter.rdp_curve(planned_json, orders)
    plan.filter_before = rdp_filter.certified_epsilon(spent_rdp, budget_delta=budget.delta, orders=orders)
    plan.filter_after = rdp_filter.certified_epsilon(rdp_filter.add(spent_rdp, planned_rdp),
                                                     budget_delta=budget.delta, orders=orders)
    plan._max_epsilon = lambda: rdp_filter.max_epsilon(
        spent_rdp, planned_json, budget_epsilon=budget.epsilon, budget_delta=budget.delta,
        run_delta=charge.delta or budget.delta, orders=orders)
    non_private = '"NonPrivateDpEvent"' in planned_json
    if non_private and not charge.allow_non_private:
        plan.refusal = non_private_message(charge, budget)
    elif not non_private and not rdp_filter.admits(spent_rdp, planned_rdp, budget_epsilon=budget.epsilon,
                                                   budget_delta=budget.delta, orders=orders):
        plan.refusal = OVER_BUDGET  # the full message needs max_epsilon: built when raised
    return plan


def reserve(book, charges: Sequence[Charge]) -> Run:
    """Plan every charge under the write lock, refuse them all or reserve them all, in one transaction.

    The charges are planned once before the lock (which reads every charge and computes the planned
    events' RDP curves), so under the lock only the entries written since are read and added to the
    filter's sums: no composition or recomputation holds the lock.
    """
    from privtrain.ledger import rows

    if not charges:
        raise ValueError("a run charges at least one budget")
    for c in charges:
        plan_charge(book, c)  # warms this process's view of the keys; decides nothing
    with book._write():
        plans = [plan_charge(book, c) for c in charges]
        refused = next((p for p in plans if not p.fits), None)
        if refused is None:
            reservations = _reserve(book, charges, plans, rows)
    if refused is not None:  # nothing was written: the empty transaction committed
        raise refusal_error(refused)
    book._anchor()
    return Run(book, charges, plans, reservations)


def _reserve(book, charges: Sequence[Charge], plans, rows) -> list:
    """Write default budgets, rows and one reservation per charge (inside the write transaction)."""
    for plan in plans:
        if plan.budget_is_default:
            c = plan.charge
            book._append(status="budget", source=c.source, source_name=c.source_name, unit=c.unit,
                         scope=c.scope, scope_label=c.scope_label or None, epsilon=plan.budget.epsilon,
                         delta=plan.budget.delta, run_id=c.run_id, recipe=c.recipe,
                         detail=_budget_detail(plan.budget, default=True))
    for c in charges:
        if c.rows is not None:
            rows.register(book, c.source, c.source_name, c.rows)
    where = stale.identity()
    return [book._append(status="reserved", **entry_fields(c, c.events, c.epsilon, where=where)) for c in charges]


def _budget_detail(budget: Budget, *, default: bool) -> str:
    import json

    return json.dumps({"orders": list(budget.orders), "default": default})


# --- refusals -----------------------------------------------------------------------------


def _eps(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.4g}"


def refusal_error(plan: Plan) -> UserError:
    if plan.refusal == OVER_BUDGET:
        return BudgetExceeded(budget_exceeded_message(plan))
    return UserError(plan.refusal)


def budget_exceeded_message(plan: Plan) -> str:
    c, b = plan.charge, plan.budget
    most = plan.max_epsilon
    if plan.filter_before is not None and math.isinf(plan.filter_before):
        return (f"over budget: a non-private run was charged to {c.describe()}, so its budget ε={b.epsilon:g} is "
                "spent for good: no private run can be admitted on these people any more. Nothing was charged.")
    most_text = ("no run with noise fits any more" if most == 0.0 else
                 "n/a (this run's events have no noise to scale)" if most is None else
                 f"ε={_eps(most)} at δ={c.delta:g}")
    link = f" ({c.link})" if c.link else ""
    return (f"over budget: {c.describe()}{link} has spent ε={_eps(plan.spent)} (tight PLD estimate) of its budget "
            f"ε={b.epsilon:g} at δ={b.delta:g}, and the admission filter, valid for adaptively chosen runs, "
            f"certifies ε={_eps(plan.filter_before)} (remaining ε={_eps(plan.remaining)}); this run (ε={_eps(c.epsilon)}) "
            f"would bring the filter to ε={_eps(plan.filter_after)}; the largest this run could still use is "
            f"{most_text}. Nothing was charged. To go on, raise the budget as a recorded decision: "
            f"privtrain ledger budget set {c.source_name if c.source_name else c.source} --epsilon E "
            f"--delta {b.delta:g}{' --unit client --population ' + c.scope[:12] if c.scope else ''}.")


def non_private_message(charge: Charge, budget: Budget) -> str:
    link = f" ({charge.link})" if charge.link else ""
    return (f"a non-private run on {charge.describe()}{link} would spend its whole budget (ε={budget.epsilon:g}, "
            f"δ={budget.delta:g}): it is refused; set ledger.allow_non_private=true to run it anyway (the source "
            "then shows ε=inf and admits no further private run).")
