"""Admission: plan a run's charges against their budgets, refuse or reserve them in one transaction.

Runs are admitted by an RDP privacy filter (:mod:`privtrain.ledger.filter`), which stays valid when
runs are chosen adaptively; the tight PLD composition is the reported estimate of spend, shown
beside it. A non-private run on a budgeted source needs ``allow_non_private``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from privtrain.errors import BudgetExceeded, UserError
from privtrain.ledger import compose, stale
from privtrain.ledger import filter as rdp_filter
from privtrain.ledger.estimates import estimate
from privtrain.ledger.model import Budget, Charge, Plan, RunRequest
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


def charges_for(core, request: RunRequest) -> tuple[Charge, ...]:
    """The run's charges (every budget its mechanisms touch), each checked against the run's policy.

    The one place a request becomes charges: :func:`privtrain.ledger.charges.build` finds the budgets,
    then every charge is judged by the rules of its own source (a table linked to a governed source is
    governed there too); a policy's total cap becomes the charge's default budget. Raises UserError on a
    rule the run breaks, before anything is written.
    """
    from privtrain import policy
    from privtrain.ledger import charges, consent
    from privtrain.policy import consent as consent_rules

    built = charges.build(core, request)
    rules = request.policy
    # every charged source's recorded consent binds the run, with or without a policy (a linked copy included)
    consent_rules.check_charges(
        None if rules is None else rules.policy, built, request.facts, lambda key: consent.current(core, key)
    )
    if rules is None:
        return built
    return policy.check_charges(
        rules.policy,
        built,
        run_source=rules.facts.source,
        run_tags=rules.facts.tags,
        purpose=rules.facts.purpose,
        budget_of=lambda c: core.budget(*c.key),
    )


def plan_charge(core, charge: Charge) -> Plan:
    """The pre-flight for one charge: its budget, the filter before and after, and the verdict (plain data,
    no PLD composition: see :func:`privtrain.ledger.estimates.estimate`)."""
    from privtrain.privacy import events as ev

    source, unit, scope = charge.key
    lineage = core.lineage(charge.fingerprint) if charge.fingerprint else None
    if charge.parent is not None and (lineage is None or lineage.parent != charge.parent):
        raise UserError(
            f"table {charge.fingerprint[:12] if charge.fingerprint else '?'} is not registered as "
            f"derived from source {charge.parent!r}; register_derived() it when the synthetic data "
            "is written."
        )
    budget = core.budget(source, unit, scope)
    is_default = False
    if budget is None and charge.default_budget is not None and lineage is None:
        budget, is_default = Budget(*charge.default_budget, None, rdp_filter.ORDERS), True
    state = core.key_state(source, unit, scope)
    runs = tuple(state.runs)
    delta = compose.reporting_delta(budget.delta if budget else None, runs, charge.delta or None) or 1e-5
    plan = Plan(charge, budget, delta, lineage, is_default, len(runs), upto=state.last_id, runs=runs)
    if budget is None:
        return plan
    orders = budget.orders
    planned_json = ev.dumps(charge.events)
    spent_rdp = core.filter_sum(source, unit, scope, orders)
    planned_rdp = rdp_filter.rdp_curve(planned_json, orders)
    refusal = None
    non_private = ev.is_non_private(list(charge.events))
    if non_private and not charge.allow_non_private:
        refusal = non_private_message(charge, budget)
    elif not non_private and not rdp_filter.admits(
        spent_rdp, planned_rdp, budget_epsilon=budget.epsilon, budget_delta=budget.delta, orders=orders
    ):
        refusal = OVER_BUDGET  # the full message needs the estimates: built when raised
    return dataclasses.replace(
        plan,
        spent_rdp=spent_rdp,
        refusal=refusal,
        filter_before=rdp_filter.certified_epsilon(spent_rdp, budget_delta=budget.delta, orders=orders),
        filter_after=rdp_filter.certified_epsilon(
            rdp_filter.add(spent_rdp, planned_rdp), budget_delta=budget.delta, orders=orders
        ),
    )


def reserve(core, charges: Sequence[Charge], *, policy=None) -> Run:
    """Plan every charge under the write lock, refuse them all or reserve them all, in one transaction.

    The charges are planned once before the lock (which reads every charge and computes the planned
    events' RDP curves), so under the lock only the entries written since are read and added to the
    filter's sums: no composition or recomputation holds the lock. ``policy`` (a
    :class:`privtrain.policy.Policy`), the one the charges were checked against, is recorded in the same
    transaction when the ledger does not hold it as current.
    """
    if not charges:
        raise ValueError("a run charges at least one budget")
    core.require_writable()
    core.require_intact()
    for c in charges:
        plan_charge(core, c)  # warms this process's view of the keys; decides nothing
    with core.write():
        plans = [plan_charge(core, c) for c in charges]
        refused = next((p for p in plans if not p.fits), None)
        if refused is None:
            if policy is not None:
                core.record_policy(policy.sha256, policy.label, policy.text)
            reservations = _reserve(core, charges, plans)
    if refused is not None:  # nothing was written: the empty transaction committed
        raise refusal_error(estimate(core, refused))
    core.anchor()
    return Run(core, charges, plans, reservations)


@contextmanager
def admitted(core, charges: Sequence[Charge], *, policy=None) -> Iterator[Run]:
    """Reserve ``charges`` (see :func:`reserve`) and yield the run; a run that raises stays charged at its
    reservation, and is recorded as failed."""
    run = reserve(core, charges, policy=policy)
    try:
        yield run
    except BaseException:
        run.fail()
        raise
    run.finish()


def _reserve(core, charges: Sequence[Charge], plans) -> list:
    """Write default budgets, rows and one reservation per charge (inside the write transaction)."""
    from privtrain.ledger import rows

    for plan in plans:
        if plan.budget_is_default:
            c = plan.charge
            core.append(
                status="budget",
                source=c.source,
                source_name=c.source_name,
                unit=c.unit,
                scope=c.scope,
                scope_label=c.scope_label or None,
                epsilon=plan.budget.epsilon,
                delta=plan.budget.delta,
                run_id=c.run_id,
                recipe=c.recipe,
                detail=_budget_detail(plan.budget, default=True),
            )
    for c in charges:
        if c.rows is not None:
            rows.register(core, c.source, c.source_name, c.rows)
    where = stale.identity()
    return [core.append(status="reserved", **entry_fields(c, c.events, c.epsilon, where=where)) for c in charges]


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
    if b is None:  # over budget implies a budget
        raise ValueError("budget_exceeded_message needs a plan with a budget")
    most = plan.max_epsilon
    if plan.filter_before is not None and math.isinf(plan.filter_before):
        return (
            f"over budget: a non-private run was charged to {c.describe()}, so its budget ε={b.epsilon:g} is "
            "spent for good: no private run can be admitted on these people any more. Nothing was charged."
        )
    most_text = (
        "no run with noise fits any more"
        if most == 0.0
        else "n/a (this run's events have no noise to scale)"
        if most is None
        else f"ε={_eps(most)} at δ={c.delta:g}"
    )
    link = f" ({c.link})" if c.link else ""
    return (
        f"over budget: {c.describe()}{link} has spent ε={_eps(plan.spent)} (tight PLD estimate) of its budget "
        f"ε={b.epsilon:g} at δ={b.delta:g}, and the admission filter, valid for adaptively chosen runs, "
        f"certifies ε={_eps(plan.filter_before)} (remaining ε={_eps(plan.remaining)}); this run (ε={_eps(c.epsilon)}) "
        f"would bring the filter to ε={_eps(plan.filter_after)}; the largest this run could still use is "
        f"{most_text}. Nothing was charged. To go on, raise the budget as a recorded decision: "
        f"privtrain ledger budget set {c.source_name if c.source_name else c.source} --epsilon E "
        f"--delta {b.delta:g}{' --unit client --population ' + c.scope[:12] if c.scope else ''}."
    )


def non_private_message(charge: Charge, budget: Budget) -> str:
    link = f" ({charge.link})" if charge.link else ""
    return (
        f"a non-private run on {charge.describe()}{link} would spend its whole budget (ε={budget.epsilon:g}, "
        f"δ={budget.delta:g}): it is refused; set ledger.allow_non_private=true to run it anyway (the source "
        "then shows ε=inf and admits no further private run)."
    )
