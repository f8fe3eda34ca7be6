"""A reserved run, and the messages that refuse one."""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING

from privtrain.ledger.model import Budget, Charge, Entry, Plan

if TYPE_CHECKING:
    from privtrain.ledger.api import Ledger

log = logging.getLogger(__name__)


def _eps(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.4g}"


def budget_exceeded_message(plan: Plan) -> str:
    c, b = plan.charge, plan.budget
    most = plan.max_epsilon
    most_text = ("no run with noise fits any more" if most == 0.0 else
                 "n/a (this run's events have no noise to scale)" if most is None else
                 f"ε={_eps(most)} at δ={c.delta:g}")
    return (f"over budget: dataset {c.dataset_name!r} ({c.dataset_fingerprint[:12]}, unit={c.unit}) has spent "
            f"ε={_eps(plan.spent)} of its budget ε={b.epsilon:g} at δ={b.delta:g} (remaining "
            f"ε={_eps(plan.remaining)}); this run (ε={_eps(c.epsilon)}) would bring it to ε={_eps(plan.after)}; "
            f"the largest this run could still use is {most_text}. Nothing was charged.")


def non_private_message(charge: Charge, budget: Budget) -> str:
    return (f"a non-private run on dataset {charge.dataset_name!r} ({charge.dataset_fingerprint[:12]}, "
            f"unit={charge.unit}) would spend its whole budget (ε={budget.epsilon:g}, δ={budget.delta:g}): "
            "it is refused; set ledger.allow_non_private=true to run it anyway (the dataset then shows ε=inf).")


class Run:
    """A reserved run. Call :meth:`commit` with the events actually applied when it finishes."""

    def __init__(self, ledger: "Ledger", charge: Charge, plan: Plan, reservation: Entry) -> None:
        self._ledger = ledger
        self.charge = charge
        self.plan = plan
        self.reservation = reservation
        self.entry_id = reservation.id
        self.run_id = charge.run_id
        self.committed: Entry | None = None

    def commit(self, events, artifacts: dict[str, str] | None = None, epsilon: float | None = None) -> Entry:
        """Append the 'committed' entry: the events this run actually applied, and its artifacts' hashes.

        ``epsilon`` is the run's own ε as its accountant reports it; by default the reservation's when the
        events are unchanged, else their PLD ε at the run's δ.
        """
        from privtrain.privacy import events as ev

        if self.committed is not None:
            raise RuntimeError(f"run {self.run_id} is already committed (entry {self.committed.id}).")
        events = list(events)
        if epsilon is None:
            same = ev.dumps(events) == self.reservation.events_json
            epsilon = self.reservation.epsilon if same else ev.epsilon_pld(events, self.charge.delta or 1e-5)
        if epsilon > self.reservation.epsilon * (1 + 1e-6) + 1e-9:
            warnings.warn(f"run {self.run_id} commits ε={_eps(epsilon)}, more than it reserved "
                          f"(ε={_eps(self.reservation.epsilon)}); the ledger records what was actually spent.",
                          stacklevel=2)
        from privtrain.ledger.api import _charge_fields

        fields = _charge_fields(self.charge, events, epsilon)
        self.committed = self._ledger._append_one(status="committed", ref=self.entry_id,
                                                  artifacts=_artifacts(artifacts), **fields)
        self._ledger._warm(self.charge.dataset_fingerprint, self.charge.unit)
        return self.committed

    def _fail(self) -> None:
        if self.committed is not None:
            return
        try:
            from privtrain.ledger.api import _charge_fields

            fields = _charge_fields(self.charge, self.charge.events, self.charge.epsilon)
            self._ledger._append_one(status="failed", ref=self.entry_id, **fields)
        except Exception:  # never hide the run's own error; the reservation still charges it
            log.exception("could not record the failure of run %s; it stays charged at its reservation",
                          self.run_id)

    def _finish(self) -> None:
        if self.committed is None:
            warnings.warn(f"run {self.run_id} ended without commit(); it stays charged at its reservation "
                          f"(entry {self.entry_id}).", stacklevel=3)


def _artifacts(artifacts: dict[str, str] | None) -> str:
    import json

    return json.dumps(dict(sorted((artifacts or {}).items())), separators=(",", ":"))
