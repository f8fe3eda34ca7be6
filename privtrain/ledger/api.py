"""The Ledger: plan, reserve and commit runs; read budgets and spending.

Example:
    >>> led = ledger.open()                       # doctest: +SKIP
    >>> with led.charging(charge) as run:         # doctest: +SKIP
    ...     train()
    ...     run.commit(actual_events, artifacts={"model.pt": sha})
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privtrain.errors import BudgetExceeded, UserError, require
from privtrain.ledger import compose, provenance, store
from privtrain.ledger.charging import Run, budget_exceeded_message, non_private_message
from privtrain.ledger.model import (
    Budget, Charge, DatasetSummary, Entry, Lineage, Plan, VerifyReport, check_budget, check_unit,
)

DEFAULT_PATH = Path(".privtrain") / "ledger.db"
EPS_TOLERANCE = 1e-9
OVER_BUDGET = "over budget"


def _guarded(method):
    """A damaged file surfaces as one clear UserError, not a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
                raise
            raise UserError(f"the ledger {self.path} is damaged ({exc}); nothing was changed: run "
                            "`privtrain ledger verify`, and restore it from a backup.") from None
    return wrapper


def default_path() -> Path:
    env = os.environ.get("PRIVTRAIN_LEDGER")
    return Path(env) if env else Path.cwd() / DEFAULT_PATH


def open(path: str | os.PathLike | None = None) -> "Ledger":  # noqa: A001 - the API's name
    """Open the ledger at ``path``; None means ``$PRIVTRAIN_LEDGER``, else ``./.privtrain/ledger.db``.

    Raises:
        UserError: the file is corrupt, foreign, newer than this privtrain, or cannot be created.
    """
    return Ledger(Path(path) if path is not None else default_path())


class Ledger:
    """A privacy ledger file. Cheap to open; every method reads the current state."""

    #: After each commit, compose the dataset's spent budget so `ledger show` stays fast (~1 s per commit).
    warm_cache = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn, self.read_only = store.connect(self.path)
        self._composer = compose.Composer(self._conn, writable=not self.read_only)

    def close(self) -> None:
        self._conn.close()

    # --- reading ----------------------------------------------------------------

    @_guarded
    def entries(self, dataset: str | None = None, unit: str | None = None) -> list[Entry]:
        """All entries in chain order, optionally for one dataset (fingerprint, prefix or name) and unit."""
        sql, args = "SELECT * FROM entries", []
        where = []
        if dataset is not None:
            where.append("dataset_fingerprint=?")
            args.append(self.resolve(dataset))
        if unit is not None:
            where.append("unit=?")
            args.append(check_unit(unit))
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [store.to_entry(r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    @_guarded
    def resolve(self, dataset: str) -> str:
        """A dataset's fingerprint from its fingerprint, a unique prefix of it, or its human name.

        Raises:
            UserError: unknown or ambiguous.
        """
        require(bool(dataset), "Expected a dataset name or fingerprint, got an empty string.")
        rows = self._conn.execute(
            "SELECT dataset_fingerprint, dataset_name FROM entries GROUP BY dataset_fingerprint, dataset_name"
        ).fetchall()
        fps = {r[0] for r in rows}
        if dataset in fps:
            return dataset
        by_name = sorted({r[0] for r in rows if r[1] == dataset})
        by_prefix = sorted({fp for fp in fps if fp.startswith(dataset.lower())})
        matches = by_name or by_prefix
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"dataset {dataset!r} is ambiguous: it matches {', '.join(m[:12] for m in matches)}; "
                            "give a longer fingerprint prefix.")
        if len(dataset) == 64 and all(c in "0123456789abcdef" for c in dataset.lower()):
            return dataset.lower()  # a full fingerprint not seen yet: fine for a budget set before first use
        names = sorted({f"{r[1]} ({r[0][:12]})" for r in rows})
        raise UserError(f"unknown dataset {dataset!r}: not in the ledger {self.path}"
                        + (f"; known: {', '.join(names)}" if names else " (it is empty)")
                        + "; give a name, a fingerprint prefix, or a full 64-hex fingerprint.")

    @_guarded
    def budget(self, dataset: str, unit: str = "example") -> Budget | None:
        return self._budget(self.resolve(dataset), check_unit(unit))

    def _budget(self, fp: str, unit: str) -> Budget | None:
        row = self._conn.execute(
            "SELECT id, epsilon, delta FROM entries WHERE dataset_fingerprint=? AND unit=? AND status='budget' "
            "ORDER BY id DESC LIMIT 1", (fp, unit)).fetchone()
        return None if row is None else Budget(row["epsilon"], row["delta"], row["id"])

    def _runs(self, fp: str, unit: str) -> list[compose.RunCharge]:
        rows = self._conn.execute(
            "SELECT * FROM entries WHERE dataset_fingerprint=? AND unit=? "
            "AND status IN ('reserved', 'committed', 'failed') ORDER BY id", (fp, unit))
        return compose.charged_runs(store.to_entry(r) for r in rows)

    def _name(self, fp: str) -> str | None:
        row = self._conn.execute("SELECT dataset_name FROM entries WHERE dataset_fingerprint=? "
                                 "AND dataset_name IS NOT NULL ORDER BY id DESC LIMIT 1", (fp,)).fetchone()
        return None if row is None else row[0]

    def _spent(self, fp: str, unit: str, budget: Budget | None, accountant: str = "pld") -> tuple[float, float | None]:
        runs = self._runs(fp, unit)
        delta = compose.reporting_delta(budget.delta if budget else None, runs)
        if delta is None:
            return 0.0, None
        counts = compose.event_counts(r.events_json for r in runs)
        return self._composer.epsilon(counts, delta, accountant, fingerprint=fp, unit=unit), delta

    @_guarded
    def spent(self, dataset: str, unit: str = "example") -> float:
        """Tight (PLD) ε spent on a dataset at its budget's δ (without a budget: its runs' largest δ)."""
        fp, unit = self.resolve(dataset), check_unit(unit)
        return self._spent(fp, unit, self._budget(fp, unit))[0]

    @_guarded
    def remaining(self, dataset: str, unit: str = "example") -> float | None:
        """ε left in the budget (never negative); None when the dataset has no budget."""
        fp, unit = self.resolve(dataset), check_unit(unit)
        budget = self._budget(fp, unit)
        if budget is None:
            return None
        return max(0.0, budget.epsilon - self._spent(fp, unit, budget)[0])

    @_guarded
    def lineage(self, fingerprint: str) -> Lineage | None:
        """How a derived (synthetic) dataset inherits its guarantee, or None for an original dataset."""
        row = self._conn.execute("SELECT * FROM entries WHERE dataset_fingerprint=? AND status='derived' "
                                 "ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
        if row is None:
            return None
        e = store.to_entry(row)
        return Lineage(e.dataset_fingerprint, e.dataset_name, e.parent_fingerprint, self._name(e.parent_fingerprint),
                       e.run_id, e.events_json, e.epsilon, e.delta, e.unit, e.id)

    @_guarded
    def datasets(self) -> list[DatasetSummary]:
        """One summary per (dataset, unit) the ledger has seen."""
        keys = self._conn.execute("SELECT dataset_fingerprint, unit, MIN(id) FROM entries "
                                  "GROUP BY dataset_fingerprint, unit ORDER BY MIN(id)").fetchall()
        out = []
        for fp, unit, _ in keys:
            budget = self._budget(fp, unit)
            runs = self._runs(fp, unit)
            spent, delta = self._spent(fp, unit, budget)
            rdp = self._spent(fp, unit, budget, "rdp")[0]
            remaining = None if budget is None else max(0.0, budget.epsilon - spent)
            out.append(DatasetSummary(fp, self._name(fp), unit, budget, delta, spent, rdp,
                                      compose.naive_sum(runs), remaining, len(runs), self.lineage(fp)))
        return out

    def _warm(self, fp: str, unit: str) -> None:
        """Compose (fp, unit) now, so the next `ledger show` is served from the cache."""
        if not self.warm_cache:
            return
        try:
            budget = self._budget(fp, unit)
            self._spent(fp, unit, budget)
            self._spent(fp, unit, budget, "rdp")
        except Exception:  # only a speed-up: never fail a commit over it
            pass

    def verify(self) -> VerifyReport:
        """Check the hash chain; never raises on tampering."""
        return store.verify(self._conn)

    # --- planning and charging -------------------------------------------------------

    @_guarded
    def plan(self, charge: Charge) -> Plan:
        """The pre-flight for ``charge``: read-only, touches nothing."""
        return self._plan(charge)

    def _plan(self, charge: Charge) -> Plan:
        from privtrain.privacy import events as ev

        fp, unit = charge.dataset_fingerprint, charge.unit
        lineage = self.lineage(fp)
        if charge.parent_fingerprint is not None:
            require(lineage is not None and lineage.parent_fingerprint == charge.parent_fingerprint,
                    f"dataset {charge.dataset_name!r} ({fp[:12]}) is not registered as derived from "
                    f"{charge.parent_fingerprint[:12]}; register_derived() it when the synthetic data is written.")
        budget = self._budget(fp, unit)
        is_default = False
        if budget is None and charge.default_budget is not None and lineage is None:
            budget, is_default = Budget(*charge.default_budget), True
        runs = self._runs(fp, unit)
        planned_json = ev.dumps(charge.events)
        delta = compose.reporting_delta(budget.delta if budget else None, runs, charge.delta or None)
        delta = delta if delta is not None else 1e-5
        spent_counts = compose.event_counts(r.events_json for r in runs)
        all_counts = spent_counts + compose.event_counts([planned_json])
        plan = Plan(charge, budget, delta, lineage, is_default, len(runs))
        plan._spent = lambda: self._composer.epsilon(spent_counts, delta, fingerprint=fp, unit=unit)
        plan._after = lambda: self._composer.epsilon(all_counts, delta, fingerprint=fp, unit=unit)
        plan._planned = lambda: self._composer.epsilon(compose.event_counts([planned_json]), delta,
                                                       fingerprint=fp, unit=unit)

        def max_eps() -> float | None:
            if budget is None:
                return math.inf
            from privtrain.ledger import capacity

            return capacity.max_epsilon(spent_counts, planned_json, budget_epsilon=budget.epsilon,
                                        budget_delta=budget.delta, run_delta=charge.delta, spent=plan.spent)

        plan._max_epsilon = max_eps
        non_private = '"NonPrivateDpEvent"' in planned_json
        if budget is not None and non_private and not charge.allow_non_private:
            plan.refusal = non_private_message(charge, budget)
        elif budget is not None and not non_private and plan.after > budget.epsilon + EPS_TOLERANCE:
            plan.refusal = OVER_BUDGET  # the full message needs max_epsilon: built when raised
        return plan

    def _state(self, fp: str) -> str | None:
        """Hash of the newest entry touching ``fp``: a plan computed at this state is still valid."""
        row = self._conn.execute("SELECT hash FROM entries WHERE dataset_fingerprint=? ORDER BY id DESC LIMIT 1",
                                 (fp,)).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def charging(self, charge: Charge) -> Iterator[Run]:
        """Pre-flight and reserve ``charge`` in one transaction; yield the :class:`Run`.

        Raises:
            BudgetExceeded: the plan does not fit (nothing is written).
            UserError: a non-private run on a dataset with a budget without ``allow_non_private``.
        """
        self._require_writable()
        state = self._state(charge.dataset_fingerprint)
        plan = self._plan(charge)  # composed outside the lock: the common, uncontended case
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._state(charge.dataset_fingerprint) != state:
                plan = self._plan(charge)  # someone charged this dataset meanwhile: recompose under the lock
            if plan.refusal is not None:
                self._conn.execute("ROLLBACK")
                if plan.refusal == OVER_BUDGET:
                    raise BudgetExceeded(budget_exceeded_message(plan))
                raise UserError(plan.refusal)
            if plan.budget_is_default:
                self._append(status="budget", dataset_fingerprint=charge.dataset_fingerprint,
                             dataset_name=charge.dataset_name, unit=charge.unit, epsilon=plan.budget.epsilon,
                             delta=plan.budget.delta, run_id=charge.run_id, recipe=charge.recipe)
            entry = self._append(status="reserved", **_charge_fields(charge, charge.events, charge.epsilon))
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        run = Run(self, charge, plan, entry)
        try:
            yield run
        except BaseException:
            run._fail()
            raise
        run._finish()

    def _require_writable(self) -> None:
        require(not self.read_only, f"the ledger {self.path} is read-only: nothing can be charged or changed; "
                                    "fix its permissions or point PRIVTRAIN_LEDGER elsewhere.")

    def _append(self, **fields) -> Entry:
        fields.setdefault("events", "[]")
        fields.setdefault("artifacts", "{}")
        fields.update(provenance.stamp())
        try:
            return store.append(self._conn, fields)
        except sqlite3.OperationalError as exc:
            if store._is_readonly_error(exc):
                raise UserError(f"the ledger {self.path} is read-only ({exc}); nothing was charged.") from None
            raise

    def _append_one(self, **fields) -> Entry:
        """Append in its own write transaction."""
        self._require_writable()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            entry = self._append(**fields)
            self._conn.execute("COMMIT")
            return entry
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # --- administration --------------------------------------------------------------

    @_guarded
    def set_budget(self, dataset: str, unit: str, epsilon: float, delta: float) -> Budget:
        """Set (or change) the budget of (dataset, unit). Recorded as a chained entry."""
        epsilon, delta = check_budget(epsilon, delta)
        fp, unit = self.resolve(dataset), check_unit(unit)
        entry = self._append_one(status="budget", dataset_fingerprint=fp, dataset_name=self._name(fp), unit=unit,
                                 epsilon=epsilon, delta=delta)
        return Budget(epsilon, delta, entry.id)

    @_guarded
    def register_derived(self, child_fingerprint: str, child_name: str, parent_fingerprint: str, run_id: str,
                         events, epsilon: float, delta: float, unit: str) -> Lineage:
        """Record that ``child`` (synthetic data) was produced from ``parent`` by run ``run_id``.

        ``events`` are the synthesizer's events (its charge on the parent, already made by that run),
        or a NonPrivateDpEvent for a non-DP synthesizer (ε = inf). Nothing new is charged.
        """
        from privtrain.privacy import events as ev

        check_unit(unit)
        require(child_fingerprint != parent_fingerprint, "A derived dataset must differ from its parent.")
        events = list(events)
        if ev.is_non_private(events):
            epsilon = math.inf
        self._append_one(status="derived", dataset_fingerprint=child_fingerprint, dataset_name=child_name,
                         unit=unit, parent_fingerprint=parent_fingerprint, run_id=run_id,
                         events=ev.dumps(events), epsilon=float(epsilon), delta=float(delta))
        return self.lineage(child_fingerprint)


def _charge_fields(charge: Charge, events, epsilon: float) -> dict:
    from privtrain.privacy import events as ev

    return dict(run_id=charge.run_id, recipe=charge.recipe, config_hash=charge.config_hash,
                dataset_fingerprint=charge.dataset_fingerprint, dataset_name=charge.dataset_name,
                unit=charge.unit, parent_fingerprint=charge.parent_fingerprint,
                events=ev.dumps(list(events)), epsilon=float(epsilon), delta=float(charge.delta))


__all__ = ["Ledger", "open", "default_path"]
