"""A reserved run: commit what it actually did, or stay charged at its reservation."""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence

from privtrain.ledger.model import Charge, Entry, Lineage, Plan

log = logging.getLogger(__name__)


def entry_fields(charge: Charge, events, epsilon: float, *, where: dict | None = None) -> dict:
    """The chained columns of a run entry for ``charge`` (its RDP curve included, for the filter);
    ``where`` is the reserving process (host, pid, start), so a stale reservation can be found."""
    from privtrain.ledger import filter as rdp_filter
    from privtrain.privacy import events as ev

    text = ev.dumps(list(events))
    curve = [x if math.isfinite(x) else "inf" for x in rdp_filter.rdp_curve(text)]
    detail: dict[str, str | dict] = {"link": charge.link} if charge.link else {}
    if where is not None:
        detail["process"] = where
    if charge.policy:
        detail["policy"] = charge.policy
    return dict(
        run_id=charge.run_id,
        recipe=charge.recipe,
        config_hash=charge.config_hash,
        source=charge.source,
        source_name=charge.source_name,
        scope=charge.scope,
        scope_label=charge.scope_label or None,
        unit=charge.unit,
        dataset_fingerprint=charge.fingerprint,
        parent=charge.parent,
        events=text,
        rdp=json.dumps(curve),
        epsilon=float(epsilon),
        delta=float(charge.delta),
        detail=json.dumps(detail),
    )


def _eps(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.4g}"


class Run:
    """A reserved run: one reservation per charge. Call :meth:`commit` when it finishes."""

    def __init__(self, core, charges: Sequence[Charge], plans: Sequence[Plan], reservations: Sequence[Entry]):
        self._core = core
        self.charges = tuple(charges)
        self.plans = tuple(plans)
        self.reservations = tuple(reservations)
        self.charge, self.plan, self.reservation = self.charges[0], self.plans[0], self.reservations[0]
        self.entry_id = self.reservation.id
        self.run_id = self.charge.run_id
        self.committed: tuple[Entry, ...] = ()

    def summary(self) -> dict:
        """What metrics.json and the model card cite: the ledger, the entry, and every budget after this run
        (PLD estimates composed on first call, outside any lock)."""
        from privtrain.ledger.estimates import estimate

        charges = []
        for c, p in zip(self.charges, self.plans):
            p = estimate(self._core, p) if p.after is None else p
            charges.append(
                {
                    "source": c.source,
                    "name": c.source_name,
                    "unit": c.unit,
                    "scope": c.scope or None,
                    "population": c.scope_label or None,
                    "link": c.link,
                    "budget": None if p.budget is None else {"epsilon": p.budget.epsilon, "delta": p.budget.delta},
                    "spent_after_run": p.after,
                    "filter_after_run": p.filter_after,
                    "remaining": p.remaining_after,
                }
            )
        head = charges[0]
        return {
            "path": str(self._core.path),
            "entry": self.run_id,
            "source": head["name"],
            "unit": head["unit"],
            "remaining": head["remaining"],
            "spent_after_run": head["spent_after_run"],
            "filter_after_run": head["filter_after_run"],
            "budget": head["budget"],
            "charges": charges,
        }

    def commit(
        self,
        events: Mapping[str, Sequence] | Sequence | None = None,
        artifacts: dict | None = None,
        epsilon: Mapping[str, float] | float | None = None,
        derived: Lineage | None = None,
    ) -> tuple[Entry, ...]:
        """Append a 'committed' entry per charge: the events actually applied, and the artifacts' hashes.

        Args:
            events: per unit (``{"example": ..., "client": ...}``), or one sequence for every charge;
                None keeps each reservation's events.
            epsilon: the run's own ε per unit (or one number); by default the reservation's when the
                events are unchanged, else their PLD ε at the charge's δ.
            derived: synthetic rows this run wrote, registered as derived from its source in the same
                transaction (runs on them then add no charge to the source).
        """
        from privtrain.ledger.charges import reported_epsilon
        from privtrain.privacy import events as ev

        if self.committed:
            raise RuntimeError(f"run {self.run_id} is already committed.")
        rows = []
        for charge, reservation in zip(self.charges, self.reservations):
            applied = _for_unit(events, charge.unit, charge.events)
            eps = _for_unit(epsilon, charge.unit, None)
            if eps is None:
                same = ev.dumps(list(applied)) == reservation.events_json
                eps = reservation.epsilon if same else ev.epsilon_pld(list(applied), charge.delta or 1e-5)
            eps = reported_epsilon(applied, charge.delta, eps)
            if eps > reservation.epsilon * (1 + 1e-6) + 1e-9:
                warnings.warn(
                    f"run {self.run_id} commits ε={_eps(eps)} on {charge.describe()}, more than it "
                    f"reserved (ε={_eps(reservation.epsilon)}); the ledger records what was spent.",
                    stacklevel=2,
                )
            rows.append(
                dict(
                    status="committed",
                    ref=reservation.id,
                    artifacts=_artifacts(artifacts),
                    **entry_fields(charge, applied, eps),
                )
            )
        with self._core.transaction():
            self.committed = tuple(self._core.append(**r) for r in rows)
            if derived is not None:
                self._core.append_derived(
                    derived.child_fingerprint,
                    derived.child_name,
                    derived.parent,
                    self.run_id,
                    derived.events,
                    derived.epsilon,
                    derived.delta,
                    derived.unit,
                )
        for charge in self.charges:
            self._core.warm(charge.source, charge.unit, charge.scope)
        return self.committed

    def fail(self) -> None:
        if self.committed:
            return
        try:
            with self._core.transaction():
                for charge, reservation in zip(self.charges, self.reservations):
                    self._core.append(
                        status="failed", ref=reservation.id, **entry_fields(charge, charge.events, charge.epsilon)
                    )
        except Exception:  # never hide the run's own error; the reservations still charge it
            log.exception("could not record the failure of run %s; it stays charged at its reservation", self.run_id)

    def finish(self) -> None:
        if not self.committed:
            warnings.warn(
                f"run {self.run_id} ended without commit(); it stays charged at its reservation "
                f"(entry {self.entry_id}).",
                stacklevel=3,
            )


def _for_unit(value, unit: str, default):
    if value is None:
        return default
    if isinstance(value, Mapping):
        return value.get(unit, default)
    return value


def _artifacts(artifacts: dict[str, str] | None) -> str:
    return json.dumps(dict(sorted((artifacts or {}).items())), separators=(",", ":"))
