"""The Ledger: budgets per data source, what each has spent, and the one run protocol.

Example:
    >>> book = ledger.open()                                  # doctest: +SKIP
    >>> charges = book.charges(request)                       # doctest: +SKIP
    >>> with book.charging(*charges) as run:                  # doctest: +SKIP
    ...     train()
    ...     run.commit({"example": events}, artifacts={"model.pt": sha})
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privtrain.errors import UserError, require
from privtrain.ledger import admission, backends, compose, provenance, rows, store, totals
from privtrain.ledger import filter as rdp_filter
from privtrain.ledger.model import (
    Budget, Charge, Entry, Lineage, RunRequest, SourceSummary, VerifyReport, check_budget, check_unit,
)
from privtrain.ledger.run import Run
from privtrain.sources import Source, check_name

DEFAULT_PATH = Path(".privtrain") / "ledger.db"
BUILTIN_SOURCES = ("digits", "breast_cancer", "wine")
RUN_STATUSES = ("reserved", "committed", "failed")


def _guarded(method):
    """A damaged file (or a lost database connection) surfaces as one clear UserError, not a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except self._backend.errors as exc:
            why = self._backend.damage(exc)
            if why is None:
                raise
            raise UserError(why) from None
    return wrapper


def default_path(start: Path | None = None) -> Path | str:
    """The project's ledger, found the way git finds its repository.

    ``$PRIVTRAIN_LEDGER`` if set (a path, or a ``postgresql://`` URL, returned as text); else ``.privtrain/ledger.db`` in the nearest folder, from ``start`` (the
    working directory) upward, that has a ``.privtrain/``; else at the root of the enclosing git
    repository; else in the user's data folder (``$XDG_DATA_HOME/privtrain``, ``~/.local/share/privtrain``).
    So a notebook in ``notebooks/`` and a script at the project's root share one ledger.
    """
    env = os.environ.get("PRIVTRAIN_LEDGER")
    if env:
        return env if backends.is_url(env) else Path(env)
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".privtrain").is_dir():
            return folder / DEFAULT_PATH
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder / DEFAULT_PATH
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "privtrain" / "ledger.db"


def open(path: str | os.PathLike | None = None, *, create: bool = True) -> "Ledger":  # noqa: A001 - the API's name
    """Open the ledger at ``path`` (a file, or a ``postgresql://`` URL); None means the project's ledger
    (:func:`default_path`).

    Args:
        create: create the file (or the database's tables) when it does not exist; read-only commands pass False.

    Raises:
        UserError: the file is corrupt, foreign, older or newer than this privtrain, cannot be created, or does
            not exist and ``create`` is False; the database cannot be reached.
    """
    where = path if path is not None else default_path()
    return Ledger(str(where) if backends.is_url(str(where)) else Path(where), create=create)


class Ledger:
    """A privacy ledger: an SQLite file or a PostgreSQL database. Cheap to open; every method reads the
    current state. ``path`` is the file's path, or the database URL without its password."""

    #: After each commit, compose the source's spend so `ledger show` stays fast.
    warm_cache = True

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self._backend = backends.open_backend(path, create=create)
        self.path = self._backend.location if backends.is_url(str(path)) else Path(path)
        self.read_only = self._backend.read_only
        self._composer = compose.Composer(self._backend, writable=not self.read_only)
        self._totals = totals.Totals(self._backend, writable=not self.read_only)
        self._keys: dict[tuple[str, str, str], compose.KeyState] = {}

    @property
    def location(self) -> str:
        """Where the ledger is, as text: the file's path or the URL without its password."""
        return self._backend.location

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._backend.kind

    @property
    def _conn(self):
        """The backend's driver connection (tests and maintenance only)."""
        return self._backend.conn

    def close(self) -> None:
        self._backend.close()

    # --- reading ----------------------------------------------------------------

    @_guarded
    def entries(self, source: str | None = None, unit: str | None = None, scope: str | None = None) -> list[Entry]:
        """All entries in chain order, optionally for one source (key, name or prefix), unit and scope."""
        rows_ = self._backend.entries(source=None if source is None else self.resolve(source),
                                      unit=None if unit is None else check_unit(unit), scope=scope)
        return [store.to_entry(r) for r in rows_]

    @_guarded
    def resolve(self, source: str) -> str:
        """A source's key from its key, its name, a fingerprint (prefix) of a table charged to it.

        A built-in name resolves before first use; so does any full 64-hex fingerprint.

        Raises:
            UserError: unknown or ambiguous.
        """
        require(bool(source), "Expected a source name or fingerprint, got an empty string.")
        rows_ = self._backend.source_names()
        keys = {r[0] for r in rows_}
        if source in keys or source in BUILTIN_SOURCES:
            return source
        text = source.lower()
        by_name = {r[0] for r in rows_ if r[1] == source}
        by_table = {r[0] for r in rows_ if r[2] and r[2] == text}
        matches = by_name or by_table
        if not matches and len(text) >= 6:
            matches = {k for k in keys if k.startswith(text)} or {r[0] for r in rows_ if r[2] and r[2].startswith(text)}
        if len(matches) == 1:
            return next(iter(matches))
        if len(matches) > 1:
            raise UserError(f"source {source!r} is ambiguous: it matches {', '.join(sorted(m[:12] for m in matches))}; "
                            "give a longer fingerprint prefix.")
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return text  # a content fingerprint not seen yet: fine for a budget set before first use
        names = sorted({r[1] or r[0][:12] for r in rows_})
        raise UserError(f"unknown source {source!r}: not in the ledger {self.path}"
                        + (f"; known: {', '.join(names)}" if names else " (it is empty)")
                        + "; give a built-in or declared source name, a fingerprint, or a file path.")

    def name(self, source: str) -> str | None:
        row = self._backend.latest(source=source, present="source_name")
        return row["source_name"] if row is not None else (source if source in BUILTIN_SOURCES else None)

    def _scope_label(self, source: str, scope: str) -> str | None:
        row = self._backend.latest(source=source, scope=scope, present="scope_label")
        return None if row is None else row["scope_label"]

    @_guarded
    def budget(self, source: str, unit: str = "example", scope: str = "") -> Budget | None:
        return self._budget(self.resolve(source), check_unit(unit), scope)

    def _budget(self, source: str, unit: str, scope: str = "") -> Budget | None:
        row = self._backend.latest(source=source, unit=unit, scope=scope, statuses=("budget", "unbudget"))
        if row is None or row["status"] == "unbudget":
            return None
        orders = tuple(json.loads(row["detail"]).get("orders") or rdp_filter.ORDERS)
        return Budget(row["epsilon"], row["delta"], row["id"], orders)

    def _state(self, source: str, unit: str, scope: str = "") -> compose.KeyState:
        """The key's charges, brought up to date with the run entries written since the last read."""
        state = self._keys.setdefault((source, unit, scope), compose.KeyState())
        new = self._backend.entries(source=source, unit=unit, scope=scope, statuses=RUN_STATUSES, after=state.last_id)
        state.update([store.to_entry(r) for r in new])
        return state

    def _prime(self, rows: list[dict]) -> None:
        """Every key's charges from a verified walk of the whole chain (one snapshot): no second read."""
        by_key: dict[tuple[str, str, str], list] = {}
        for r in rows:
            if r["status"] in RUN_STATUSES:
                by_key.setdefault((r["source"], r["unit"], r["scope"] or ""), []).append(store.to_entry(r))
        self._keys.clear()
        for key, entries in by_key.items():
            self._keys[key] = state = compose.KeyState()
            state.update(entries)

    def _runs(self, source: str, unit: str, scope: str = "") -> list[compose.RunCharge]:
        return self._state(source, unit, scope).runs

    def _spent(self, source: str, unit: str, scope: str, budget: Budget | None,
               accountant: str = "pld") -> tuple[float, float | None]:
        state = self._state(source, unit, scope)
        runs = state.runs
        delta = compose.reporting_delta(budget.delta if budget else None, runs)
        if delta is None:
            return 0.0, None
        if accountant != "pld":
            counts = compose.event_counts(r.events_json for r in runs)
            return self._composer.epsilon(counts, delta, accountant, fingerprint=source, unit=unit), delta
        return self._totals.spent((source, unit, scope), runs, delta, state.last_id), delta

    def _filter_sum(self, source: str, unit: str, scope: str, orders) -> tuple[float, ...]:
        """The filter's running sum over the key's charges: each run's chained RDP curve (recomputed on
        another grid), kept up to date incrementally."""
        return self._state(source, unit, scope).rdp_sum(tuple(orders), _curve)

    def _rdp_spent(self, runs: list[compose.RunCharge], orders) -> tuple[float, ...]:
        """The filter's sum over ``runs`` (a list given by the caller)."""
        total = tuple(0.0 for _ in orders)
        for r in runs:
            total = rdp_filter.add(total, _curve(r, tuple(orders)))
        return total

    @_guarded
    def spent(self, source: str, unit: str = "example", scope: str = "") -> float:
        """Tight (PLD) ε spent on a source at its budget's δ (without a budget: its runs' largest δ)."""
        key, unit = self.resolve(source), check_unit(unit)
        return self._spent(key, unit, scope, self._budget(key, unit, scope))[0]

    @_guarded
    def filter_epsilon(self, source: str, unit: str = "example", scope: str = "") -> float | None:
        """What the admission filter certifies at the budget's δ; None without a budget."""
        key, unit = self.resolve(source), check_unit(unit)
        budget = self._budget(key, unit, scope)
        if budget is None:
            return None
        spent = self._filter_sum(key, unit, scope, budget.orders)
        return rdp_filter.certified_epsilon(spent, budget_delta=budget.delta, orders=budget.orders)

    @_guarded
    def remaining(self, source: str, unit: str = "example", scope: str = "") -> float | None:
        """ε the filter still admits (budget minus its certified ε, never negative); None without a budget."""
        key = self.resolve(source)
        budget = self._budget(key, check_unit(unit), scope)
        if budget is None:
            return None
        return max(0.0, budget.epsilon - self.filter_epsilon(key, unit, scope))

    @_guarded
    def lineage(self, fingerprint: str) -> Lineage | None:
        """How a derived (synthetic) table inherits its guarantee, or None for original data."""
        if not fingerprint:
            return None
        row = self._backend.latest(fingerprint=fingerprint, statuses=("derived",))
        if row is None:
            return None
        e = store.to_entry(row)
        return Lineage(e.dataset_fingerprint, e.source_name, e.parent, self.name(e.parent), e.run_id,
                       e.events_json, e.epsilon, e.delta, e.unit, e.id)

    @_guarded
    def sources(self) -> list[SourceSummary]:
        """One summary per (source, unit, scope) the ledger has seen; populations follow their source."""
        keys = self._backend.budget_keys(exclude=("rows", "migrated", "accepted", "artifacts", "policy"))
        first = {}
        for source, unit, scope, at in keys:
            first[source] = min(first.get(source, at), at)
        keys = sorted(keys, key=lambda k: (first[k[0]], k[0], k[2] != "", k[3]))
        return [self._summary(source, unit, scope) for source, unit, scope, _ in keys]

    def _summary(self, source: str, unit: str, scope: str) -> SourceSummary:
        budget = self._budget(source, unit, scope)
        runs = self._runs(source, unit, scope)
        spent, delta = self._spent(source, unit, scope, budget)
        filt = remaining = None
        if budget is not None:
            filt = rdp_filter.certified_epsilon(self._filter_sum(source, unit, scope, budget.orders),
                                                budget_delta=budget.delta, orders=budget.orders)
            remaining = max(0.0, budget.epsilon - filt)
        lineage = self.lineage(source) if len(source) == 64 else None
        return SourceSummary(source, self.name(source), unit, scope, self._scope_label(source, scope) if scope else None,
                             budget, delta, spent, filt, compose.naive_sum(runs), remaining, len(runs), lineage)

    @_guarded
    def open_reservations(self) -> list:
        """Reservations never committed nor failed, with whether their process still runs (see ledger.stale)."""
        from privtrain.ledger import stale

        return stale.open_reservations(self.entries())

    @_guarded
    def reconcile(self, run_ids: list[str] | None = None) -> list[Entry]:
        """Close reservations as ``failed`` (still charged at their reservation), as chained entries.

        Args:
            run_ids: the runs to close; None closes every reservation whose process is gone on this host.

        Raises:
            UserError: a named run has no open reservation, or its process still runs.
        """
        from privtrain.ledger.run import entry_fields

        found = {r.entry.run_id: r for r in self.open_reservations()}
        if run_ids is None:
            chosen = [r for r in found.values() if r.alive is False]
        else:
            missing = [i for i in run_ids if i not in found]
            if missing:
                raise UserError(f"run {missing[0]} has no open reservation; see `privtrain ledger runs --stale`.")
            running = [i for i in run_ids if found[i].alive]
            if running:
                raise UserError(f"run {running[0]} is still running on this host; it will commit or fail itself.")
            chosen = [found[i] for i in run_ids]
        out = []
        with self._transaction():
            for r in chosen:
                e = r.entry
                charge = Charge(run_id=e.run_id, recipe=e.recipe or "?", source=e.source, source_name=e.source_name or "",
                                unit=e.unit, events=tuple(e.events), delta=e.delta, epsilon=e.epsilon,
                                config_hash=e.config_hash or "", fingerprint=e.dataset_fingerprint, scope=e.scope,
                                scope_label=e.scope_label or "", parent=e.parent)
                fields = entry_fields(charge, charge.events, charge.epsilon)
                fields["detail"] = json.dumps({**json.loads(fields["detail"]), "reconciled": r.state})
                out.append(self._append(status="failed", ref=e.id, **fields))
        return out

    def _warm(self, source: str, unit: str, scope: str) -> None:
        """Compose the key's PLD spend now, so the next `ledger show` is served from the cache."""
        if not self.warm_cache:
            return
        try:
            self._spent(source, unit, scope, self._budget(source, unit, scope))
        except Exception:  # only a speed-up: never fail a commit over it
            pass

    def verify(self, *, head: str | None = None) -> VerifyReport:
        """Check the file, the hash chain, its signature, the anchors and the source rows; never raises on tampering.

        Args:
            head: ``COUNT:HASH`` (or ``HASH``) printed by ``privtrain ledger head`` and kept elsewhere.
        """
        from privtrain.ledger import integrity

        return integrity.verify(self._backend, rows_digest=rows.digest_of, head=head)

    def head(self) -> tuple[int, str]:
        """(entries, hash of the newest): publish it outside the file to pin the chain."""
        head_id, head_hash = self._backend.head_record()
        return head_id, head_hash

    def require_intact(self) -> None:
        """Raise when the chain does not verify: a damaged ledger admits no run.

        The whole chain is walked once per process; later calls check only the entries appended since, the
        last verified entry and the head record (see :func:`privtrain.ledger.integrity.verify_tail`).
        """
        from privtrain.ledger import integrity

        report = integrity.verify_tail(self._backend, on_rows=self._prime)
        if not report.ok:
            raise UserError(f"the ledger {self.path} fails verification ({report.problem}); it admits no run until "
                            "it is restored from a backup, or the damage is accepted as a recorded decision: "
                            "privtrain ledger accept-damage --reason TEXT. Nothing was charged.")

    @_guarded
    def accept_damage(self, reason: str, *, exhaust_budgets: bool = False) -> Entry:
        """Record, as a chained entry (signed with ``PRIVTRAIN_LEDGER_KEY`` when the ledger is), that the ledger's
        damage is accepted, without lowering what it counts as spent or raising a budget: what the damaged
        entries no longer show is charged in the same transaction (see :mod:`privtrain.ledger.damage`).

        Args:
            exhaust_budgets: when entries that nothing bounds were edited or lost, count every budget as
                spent instead of refusing.

        Raises:
            UserError: nothing to accept (it verifies), no reason given, a signed ledger without its key, or
                unbounded damage without ``exhaust_budgets``.
        """
        from privtrain.ledger import damage, integrity

        require(bool(reason and reason.strip()), "accept-damage needs --reason: say why the damage is accepted.")
        self._require_writable()
        anchor, recorded = integrity.read_anchor(self.location), integrity.read_floors(self.location)
        report = self.verify()
        if report.ok:
            raise UserError(f"the ledger {self.path} verifies: there is no damage to accept.")
        key = integrity.ledger_key()
        stored = self._backend.chain_rows()
        require(key is not None or not any(r["mac"] for r in stored),
                f"the ledger {self.path} is signed: accepting its damage is a signed decision; set "
                f"{integrity.KEY_ENV} to its key.")
        assessment = damage.assess(stored, self._backend.head_record(), anchor=anchor, recorded=recorded,
                                   key=key, exhaust=exhaust_budgets)
        last = (stored[-1]["id"], stored[-1]["hash"]) if stored else None
        with self._transaction():
            require(self._backend.last_entry() == last, "the ledger changed while its damage was assessed; "
                                                        "run accept-damage again.")
            accepted = self._append(status="accepted", source="ledger", unit="example", epsilon=0.0, delta=0.0,
                                    detail=json.dumps({"problem": report.problem, "reason": reason.strip(),
                                                       "entries": len(stored),
                                                       "prefix_digest": integrity.prefix_digest(stored),
                                                       "outcome": assessment.summary(), **assessment.detail()}))
            reservation = None
            for fields in damage.entries(assessment, accepted.id):
                if fields["status"] == "committed":
                    fields["ref"] = reservation.id
                reservation = self._append(**fields)
        return accepted

    # --- planning and charging -------------------------------------------------------

    @_guarded
    def charges(self, request: RunRequest) -> tuple[Charge, ...]:
        """The one constructor of a run's charges: every budget its mechanisms touch.

        Example-level mechanisms charge the run's source and every known source that shares its rows;
        client-level ones charge the source's federated population. Derived (synthetic) data is
        post-processing: its runs are tracked under the derived table and charge nothing to the parent.
        """
        from privtrain.ledger import charges

        return charges.build(self, request)

    @_guarded
    def plan(self, *charges: Charge) -> admission.RunPlan:
        """The pre-flight for every charge of a run: read-only, touches nothing."""
        return admission.RunPlan(tuple(admission.plan_charge(self, c) for c in charges))

    @contextmanager
    def charging(self, *charges: Charge) -> Iterator[Run]:
        """Reserve every charge of a run in one transaction; yield the :class:`Run`.

        A run that raises stays charged at its reservation (it touched the data).

        Raises:
            BudgetExceeded: a charge does not fit its budget (nothing is written).
            UserError: a non-private run on a budgeted source without ``allow_non_private``.
        """
        self._require_writable()
        self.require_intact()
        run = admission.reserve(self, charges)
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
        from privtrain.ledger import integrity

        fields.setdefault("events", "[]")
        fields.setdefault("artifacts", "{}")
        fields.setdefault("detail", "{}")
        fields.update(provenance.stamp())
        return store.append(self._backend, fields, sign=integrity.signer(integrity.ledger_key()))

    @contextmanager
    def _write(self):
        """The backend's write transaction (serialises writers); rolled back on any error."""
        try:
            with self._backend.write():
                yield
        except BaseException:
            self._keys.clear()  # what was read inside may include rows that were rolled back
            raise

    @contextmanager
    def _transaction(self):
        """One write transaction; rolled back on any error; the head is anchored after it."""
        self._require_writable()
        with self._write():
            yield
        self._anchor()

    def _anchor(self) -> None:
        """After a write: remember the head outside the ledger (see ledger.integrity)."""
        from privtrain.ledger import integrity

        head_id, head_hash = self._backend.head_record()
        if head_hash:
            integrity.record_anchor(self.location, head_id, head_hash)

    # --- administration --------------------------------------------------------------

    @_guarded
    def set_budget(self, source: str, unit: str = "example", epsilon: float = None, delta: float = None, *,
                   scope: str = "", force: bool = False) -> Budget:
        """Set, raise or lower the budget of (source, unit, scope), as a chained entry.

        Raises:
            UserError: the new budget is below what the filter already certifies, without ``force``.
        """
        epsilon, delta = check_budget(epsilon, delta)
        key, unit = self._admin_key(source), check_unit(unit)
        if unit == "client":
            require(bool(scope), "a client-level budget belongs to a federated population: give its scope "
                                 "(--population, see `privtrain ledger show`).")
        previous = self._budget(key, unit, scope)
        orders = previous.orders if previous is not None else rdp_filter.ORDERS
        used = rdp_filter.certified_epsilon(self._filter_sum(key, unit, scope, orders),
                                            budget_delta=delta, orders=orders)
        if math.isinf(used) and not force:
            raise UserError(f"a non-private run was charged to source {self.name(key) or key[:12]!r} ({unit} level): "
                            "no budget can be met on these people any more. Pass --force to record one anyway "
                            "(every private run is then refused), or keep tracking it without a budget.")
        if used > epsilon and not force:
            raise UserError(f"source {self.name(key) or key[:12]!r} ({unit} level) has already used ε={used:.4g} "
                            f"by the admission filter at δ={delta:g}, above the new budget ε={epsilon:g}: every "
                            "further run on it would be refused. Pass --force to record this budget anyway.")
        with self._transaction():
            entry = self._append(status="budget", source=key, source_name=self.name(key) or _display(key),
                                 unit=unit, scope=scope, scope_label=self._scope_label(key, scope) if scope else None,
                                 epsilon=epsilon, delta=delta,
                                 detail=json.dumps({"orders": list(orders), "forced": bool(force and used > epsilon),
                                                    "previous": None if previous is None else
                                                    [previous.epsilon, previous.delta]}))
        return Budget(epsilon, delta, entry.id, orders)

    @_guarded
    def remove_budget(self, source: str, unit: str = "example", *, scope: str = "") -> None:
        """Remove the budget of (source, unit, scope): tracked, no longer enforced (a chained entry)."""
        key, unit = self.resolve(source), check_unit(unit)
        previous = self._budget(key, unit, scope)
        if previous is None:
            raise UserError(f"source {self.name(key) or key[:12]!r} has no {unit}-level budget to remove.")
        with self._transaction():
            self._append(status="unbudget", source=key, source_name=self.name(key), unit=unit, scope=scope,
                         epsilon=previous.epsilon, delta=previous.delta,
                         detail=json.dumps({"previous": [previous.epsilon, previous.delta]}))

    def _admin_key(self, source: str) -> str:
        """A budget may be set before first use: on a known source, a built-in, or a declared name."""
        try:
            return self.resolve(source)
        except UserError:
            return check_name(source, "source")

    @_guarded
    def register_table(self, source: Source, fingerprint: str, table, *, id_column: str | None = None) -> str:
        """Register a table's keyed row hashes under ``source`` without a run (e.g. a budget set on a file).

        Returns the key of the source the rows were registered with.
        """
        table_rows = rows.of_table(self, table, fingerprint, id_column)
        with self._transaction():
            rows.register(self, source.key, source.name, table_rows)
        return source.key

    @_guarded
    def record_artifacts(self, run_id: str, artifacts: dict[str, str], *, why: str) -> Entry:
        """Chain new hashes of a finished run's files (e.g. an audit appended to its model card); charges nothing."""
        from privtrain.ledger.run import _artifacts

        runs = [e for e in self.entries() if e.run_id == run_id and e.status == "committed"]
        require(bool(runs), f"run {run_id} has no committed entry in the ledger {self.path}.")
        with self._transaction():
            return self._append(status="artifacts", run_id=run_id, recipe=runs[0].recipe, source=runs[0].source,
                                source_name=runs[0].source_name, unit=runs[0].unit, epsilon=0.0, delta=0.0,
                                artifacts=_artifacts(artifacts), detail=json.dumps({"why": why}))

    def policy(self) -> dict | None:
        """The policy last recorded in the ledger: ``{"sha256", "file", "entry", "time"}``, or None."""
        row = self._backend.latest(statuses=("policy",))
        if row is None:
            return None
        last = store.to_entry(row)
        return dict(last.detail, entry=last.id, time=last.time)

    @_guarded
    def record_policy(self, sha256: str, file: str, text: str) -> Entry | None:
        """Chain a policy the ledger has not seen as its current one (first use, or a change); None if current."""
        current = self.policy()
        if current is not None and current.get("sha256") == sha256:
            return None
        with self._transaction():
            return self._append(status="policy", source="ledger", unit="example", epsilon=0.0, delta=0.0,
                                detail=json.dumps({"sha256": sha256, "file": file, "text": text,
                                                   "replaces": None if current is None else current["sha256"]}))

    @_guarded
    def register_derived(self, child_fingerprint: str, child_name: str, parent: str, run_id: str,
                         events, epsilon: float, delta: float, unit: str) -> Lineage:
        """Record that ``child`` (synthetic data) was produced from source ``parent`` by run ``run_id``.

        ``events`` are the synthesizer's events (its charge on the parent, already made by that run),
        or a NonPrivateDpEvent for a non-DP synthesizer (ε = inf). Nothing new is charged.
        """
        with self._transaction():
            self._append_derived(child_fingerprint, child_name, parent, run_id, events, epsilon, delta, unit)
        return self.lineage(child_fingerprint)

    def _append_derived(self, child_fingerprint, child_name, parent, run_id, events, epsilon, delta, unit) -> None:
        from privtrain.privacy import events as ev

        check_unit(unit)
        require(child_fingerprint != parent, "A derived dataset must differ from its parent.")
        events = list(events)
        if ev.is_non_private(events):
            epsilon = math.inf
        self._append(status="derived", source=child_fingerprint, source_name=child_name,
                     dataset_fingerprint=child_fingerprint, unit=unit, parent=parent, run_id=run_id,
                     events=ev.dumps(events), epsilon=float(epsilon), delta=float(delta))


def _curve(run: compose.RunCharge, orders: tuple[float, ...]) -> tuple[float, ...]:
    curve = run.rdp if run.rdp is not None and orders == rdp_filter.ORDERS else None
    return curve if curve is not None else rdp_filter.rdp_curve(run.events_json, orders)


def _display(key: str) -> str:
    return key if len(key) != 64 else key[:12]


__all__ = ["Ledger", "open", "default_path"]
