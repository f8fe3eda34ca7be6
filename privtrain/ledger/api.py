"""The Ledger: budgets per data source, what each has spent, and the one run protocol.

Example:
    >>> book = ledger.open()                                  # doctest: +SKIP
    >>> request = ledger.RunRequest.of("dp_sgd", access, config_hash=h, ledger=settings)  # doctest: +SKIP
    >>> with book.charging(request) as run:                   # doctest: +SKIP
    ...     train()
    ...     run.commit({"example": events}, artifacts={"model.pt": sha})
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privtrain.errors import UserError, require
from privtrain.ledger import admission, backends, compose, consent, core, estimates, rowcount, rows, store
from privtrain.ledger import filter as rdp_filter
from privtrain.ledger.core import guarded
from privtrain.ledger.model import (
    Budget,
    Charge,
    Entry,
    Lineage,
    RunRequest,
    SourceSummary,
    VerifyReport,
    check_budget,
    check_unit,
)
from privtrain.ledger.run import Run
from privtrain.sources import Source, check_name

DEFAULT_PATH = Path(".privtrain") / "ledger.db"
#: Decisions about a finished run, chained but charging nothing (see :meth:`Ledger.record_decision`).
DECISIONS = ("approval", "registry")


def default_path(start: Path | None = None) -> Path | str:
    """The project's ledger, found the way git finds its repository.

    ``$PRIVTRAIN_LEDGER`` if set (a path, or a ``postgresql://`` URL, returned as text); else
    ``.privtrain/ledger.db`` in the nearest folder, from ``start`` (the working directory) upward, that has a
    ``.privtrain/``; else at the root of the enclosing git repository; else in the user's data folder
    (``$XDG_DATA_HOME/privtrain``, ``~/.local/share/privtrain``).
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


def open(path: str | os.PathLike | None = None, *, create: bool = True) -> Ledger:  # noqa: A001 - the API's name
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
    current state. ``path`` is the file's path, or the database URL without its password.

    Its state and write primitives live in :class:`privtrain.ledger.core.Core` (``self.core``); this class
    is what users and the run protocol call.
    """

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.core = core.Core(path, create=create)
        self.path = self.core.path
        self.read_only = self.core.read_only

    @property
    def warm_cache(self) -> bool:
        """Compose each key's PLD spend after a commit, so `ledger show` stays fast (on by default)."""
        return self.core.warm_cache

    @warm_cache.setter
    def warm_cache(self, on: bool) -> None:
        self.core.warm_cache = bool(on)

    @property
    def location(self) -> str:
        """Where the ledger is, as text: the file's path or the URL without its password."""
        return self.core.location

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.core.backend.kind

    @property
    def _conn(self):
        """The backend's driver connection (tests and maintenance only)."""
        return self.core.backend.conn

    @property
    def _backend(self):
        """The storage backend (tests and maintenance only)."""
        return self.core.backend

    def close(self) -> None:
        self.core.backend.close()

    # --- reading ----------------------------------------------------------------

    @guarded
    def entries(self, source: str | None = None, unit: str | None = None, scope: str | None = None) -> list[Entry]:
        """All entries in chain order, optionally for one source (key, name or prefix), unit and scope."""
        rows_ = self.core.backend.entries(
            source=None if source is None else self.resolve(source),
            unit=None if unit is None else check_unit(unit),
            scope=scope,
        )
        return [store.to_entry(r) for r in rows_]

    @guarded
    def resolve(self, source: str) -> str:
        """A source's key from its key, its name, a fingerprint (prefix) of a table charged to it.

        A built-in name resolves before first use; so does any full 64-hex fingerprint.

        Raises:
            UserError: unknown or ambiguous.
        """
        return self.core.resolve(source)

    def name(self, source: str) -> str | None:
        """A source's display name (a built-in's or declared name, or a file's stem), or None."""
        return self.core.name(source)

    @guarded
    def budget(self, source: str, unit: str = "example", scope: str = "") -> Budget | None:
        return self.core.budget(self.resolve(source), check_unit(unit), scope)

    @guarded
    def spent(self, source: str, unit: str = "example", scope: str = "") -> float:
        """Tight (PLD) ε spent on a source at its budget's δ (without a budget: its runs' largest δ)."""
        key, unit = self.resolve(source), check_unit(unit)
        return self.core.spent(key, unit, scope, self.core.budget(key, unit, scope))[0]

    @guarded
    def filter_epsilon(self, source: str, unit: str = "example", scope: str = "") -> float | None:
        """What the admission filter certifies at the budget's δ; None without a budget."""
        key, unit = self.resolve(source), check_unit(unit)
        budget = self.core.budget(key, unit, scope)
        if budget is None:
            return None
        spent = self.core.filter_sum(key, unit, scope, budget.orders)
        return rdp_filter.certified_epsilon(spent, budget_delta=budget.delta, orders=budget.orders)

    @guarded
    def remaining(self, source: str, unit: str = "example", scope: str = "") -> float | None:
        """ε the filter still admits (budget minus its certified ε, never negative); None without a budget."""
        key = self.resolve(source)
        budget = self.core.budget(key, check_unit(unit), scope)
        if budget is None:
            return None
        return max(0.0, budget.epsilon - self.filter_epsilon(key, unit, scope))

    @guarded
    def lineage(self, fingerprint: str) -> Lineage | None:
        """How a derived (synthetic) table inherits its guarantee, or None for original data."""
        return self.core.lineage(fingerprint)

    @guarded
    def sources(self) -> list[SourceSummary]:
        """One summary per (source, unit, scope) the ledger has seen; populations follow their source."""
        keys = self.core.backend.budget_keys(
            exclude=("rows", "migrated", "accepted", "artifacts", "policy", consent.STATUS, *DECISIONS)
        )
        first: dict[str, int] = {}
        for source, _unit, _scope, at in keys:
            first[source] = min(first.get(source, at), at)
        keys = sorted(keys, key=lambda k: (first[k[0]], k[0], k[2] != "", k[3]))
        return [self._summary(source, unit, scope) for source, unit, scope, _ in keys]

    def _summary(self, source: str, unit: str, scope: str) -> SourceSummary:
        budget = self.core.budget(source, unit, scope)
        runs = self.core.runs(source, unit, scope)
        spent, delta = self.core.spent(source, unit, scope, budget)
        filt = remaining = None
        if budget is not None:
            filt = rdp_filter.certified_epsilon(
                self.core.filter_sum(source, unit, scope, budget.orders),
                budget_delta=budget.delta,
                orders=budget.orders,
            )
            remaining = max(0.0, budget.epsilon - filt)
        lineage = self.lineage(source) if len(source) == 64 else None
        return SourceSummary(
            source,
            self.name(source),
            unit,
            scope,
            self.core.scope_label(source, scope) if scope else None,
            budget,
            delta,
            spent,
            filt,
            compose.naive_sum(runs),
            remaining,
            len(runs),
            lineage,
        )

    @guarded
    def open_reservations(self) -> list:
        """Reservations never committed nor failed, with whether their process still runs (see ledger.stale)."""
        from privtrain.ledger import stale

        return stale.open_reservations(self.entries())

    @guarded
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
        with self.core.transaction():
            for r in chosen:
                e = r.entry
                charge = Charge(
                    run_id=e.run_id,
                    recipe=e.recipe or "?",
                    source=e.source,
                    source_name=e.source_name or "",
                    unit=e.unit,
                    events=tuple(e.events),
                    delta=e.delta,
                    epsilon=e.epsilon,
                    config_hash=e.config_hash or "",
                    fingerprint=e.dataset_fingerprint,
                    scope=e.scope,
                    scope_label=e.scope_label or "",
                    parent=e.parent,
                )
                fields = entry_fields(charge, charge.events, charge.epsilon)
                fields["detail"] = json.dumps({**json.loads(fields["detail"]), "reconciled": r.state})
                out.append(self.core.append(status="failed", ref=e.id, **fields))
        return out

    def verify(self, *, head: str | None = None) -> VerifyReport:
        """Check the file, the hash chain, its signature, the anchors and the source rows; never raises on tampering.

        Args:
            head: ``COUNT:HASH`` (or ``HASH``) printed by ``privtrain ledger head`` and kept elsewhere.
        """
        from privtrain.ledger import integrity

        return integrity.verify(self.core.backend, rows_digest=rows.digest_of, head=head)

    def require_intact(self) -> None:
        """Raise UserError when the chain does not verify (a damaged ledger admits no run)."""
        self.core.require_intact()

    def head(self) -> tuple[int, str | None]:
        """(entries, hash of the newest; None for an empty ledger): publish it outside the file to pin the chain."""
        head_id, head_hash = self.core.backend.head_record()
        return head_id, head_hash

    @guarded
    def identity(self) -> str | None:
        """The ledger's identity: the hash of its first entry (None while it is empty). It never changes
        (the chain would break); a copy of the file shares it, so checks that matter also ask for an entry."""
        first = self.core.backend.entry_at(1)
        return None if first is None else first["hash"]

    @guarded
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
        self.core.require_writable()
        anchor, recorded = integrity.read_anchor(self.location), integrity.read_floors(self.location)
        report = self.verify()
        if report.ok:
            raise UserError(f"the ledger {self.path} verifies: there is no damage to accept.")
        key = integrity.ledger_key()
        stored = self.core.backend.chain_rows()
        require(
            key is not None or not any(r["mac"] for r in stored),
            f"the ledger {self.path} is signed: accepting its damage is a signed decision; set "
            f"{integrity.KEY_ENV} to its key.",
        )
        assessment = damage.assess(
            stored, self.core.backend.head_record(), anchor=anchor, recorded=recorded, key=key, exhaust=exhaust_budgets
        )
        last = (stored[-1]["id"], stored[-1]["hash"]) if stored else None
        with self.core.transaction():
            require(
                self.core.backend.last_entry() == last,
                "the ledger changed while its damage was assessed; run accept-damage again.",
            )
            accepted = self.core.append(
                status="accepted",
                source="ledger",
                unit="example",
                epsilon=0.0,
                delta=0.0,
                detail=json.dumps(
                    {
                        "problem": report.problem,
                        "reason": reason.strip(),
                        "entries": len(stored),
                        "prefix_digest": integrity.prefix_digest(stored),
                        "outcome": assessment.summary(),
                        **assessment.detail(),
                    }
                ),
            )
            reservation = None
            for fields in damage.entries(assessment, accepted.id):
                if fields["status"] == "committed":
                    assert reservation is not None  # damage.entries yields each reservation before its commit
                    fields["ref"] = reservation.id
                reservation = self.core.append(**fields)
        return accepted

    # --- planning and charging -------------------------------------------------------

    @guarded
    def charges(self, request: RunRequest) -> tuple[Charge, ...]:
        """A run's charges: every budget its mechanisms touch, each checked against the run's policy.

        Example-level mechanisms charge the run's source and every known source that shares its rows;
        client-level ones charge the source's federated population. Derived (synthetic) data is
        post-processing: its runs are tracked under the derived table and charge nothing to the parent.

        Raises:
            UserError: a policy rule refuses a charge.
        """
        return admission.charges_for(self.core, request)

    @guarded
    def plan(self, request: RunRequest) -> admission.RunPlan:
        """The pre-flight for every charge of a run, policy included: read-only, touches nothing."""
        return admission.RunPlan(
            tuple(estimates.estimate(self.core, admission.plan_charge(self.core, c)) for c in self.charges(request))
        )

    @contextmanager
    def charging(self, request: RunRequest) -> Iterator[Run]:
        """The one door to the ledger: charges, policy, reservation of every charge in one transaction.

        Yields the :class:`Run`; a run that raises stays charged at its reservation (it touched the data).

        Raises:
            BudgetExceeded: a charge does not fit its budget (nothing is written).
            UserError: a policy rule refuses the run, or a non-private run on a budgeted source without
                ``allow_non_private`` (nothing is written).
        """
        with admission.admitted(
            self.core, self.charges(request), policy=None if request.policy is None else request.policy.policy
        ) as run:
            yield run

    # --- administration --------------------------------------------------------------

    @guarded
    def set_budget(
        self,
        source: str,
        unit: str = "example",
        epsilon: float | None = None,
        delta: float | None = None,
        *,
        scope: str = "",
        force: bool = False,
    ) -> Budget:
        """Set, raise or lower the budget of (source, unit, scope), as a chained entry.

        Raises:
            UserError: the new budget is below what the filter already certifies, without ``force``.
        """
        key, unit = self._admin_key(source), check_unit(unit)
        n = rowcount.known_rows(rowcount.registered_rows(self.core, key), source=key) if unit == "example" else None
        epsilon, delta = check_budget(epsilon, delta, n, what=f"the budget of source {self.name(key) or key[:12]!r}:")
        if unit == "client":
            require(
                bool(scope),
                "a client-level budget belongs to a federated population: give its scope "
                "(--population, see `privtrain ledger show`).",
            )
        previous = self.core.budget(key, unit, scope)
        orders = previous.orders if previous is not None else rdp_filter.ORDERS
        used = rdp_filter.certified_epsilon(
            self.core.filter_sum(key, unit, scope, orders), budget_delta=delta, orders=orders
        )
        if math.isinf(used) and not force:
            raise UserError(
                f"a non-private run was charged to source {self.name(key) or key[:12]!r} ({unit} level): "
                "no budget can be met on these people any more. Pass --force to record one anyway "
                "(every private run is then refused), or keep tracking it without a budget."
            )
        if used > epsilon and not force:
            raise UserError(
                f"source {self.name(key) or key[:12]!r} ({unit} level) has already used ε={used:.4g} "
                f"by the admission filter at δ={delta:g}, above the new budget ε={epsilon:g}: every "
                "further run on it would be refused. Pass --force to record this budget anyway."
            )
        with self.core.transaction():
            entry = self.core.append(
                status="budget",
                source=key,
                source_name=self.name(key) or _display(key),
                unit=unit,
                scope=scope,
                scope_label=self.core.scope_label(key, scope) if scope else None,
                epsilon=epsilon,
                delta=delta,
                detail=json.dumps(
                    {
                        "orders": list(orders),
                        "forced": bool(force and used > epsilon),
                        "previous": None if previous is None else [previous.epsilon, previous.delta],
                    }
                ),
            )
        return Budget(epsilon, delta, entry.id, orders)

    @guarded
    def remove_budget(self, source: str, unit: str = "example", *, scope: str = "") -> None:
        """Remove the budget of (source, unit, scope): tracked, no longer enforced (a chained entry)."""
        key, unit = self.resolve(source), check_unit(unit)
        previous = self.core.budget(key, unit, scope)
        if previous is None:
            raise UserError(f"source {self.name(key) or key[:12]!r} has no {unit}-level budget to remove.")
        with self.core.transaction():
            self.core.append(
                status="unbudget",
                source=key,
                source_name=self.name(key),
                unit=unit,
                scope=scope,
                epsilon=previous.epsilon,
                delta=previous.delta,
                detail=json.dumps({"previous": [previous.epsilon, previous.delta]}),
            )

    def _admin_key(self, source: str) -> str:
        """A budget may be set before first use: on a known source, a built-in, or a declared name."""
        try:
            return self.resolve(source)
        except UserError:
            return check_name(source, "source")

    @guarded
    def register_table(self, source: Source, fingerprint: str, table, *, id_column: str | None = None) -> str:
        """Register a table's keyed row hashes under ``source`` without a run (e.g. a budget set on a file).

        Returns the key of the source the rows were registered with.
        """
        table_rows = rows.of_table(self.core, table, fingerprint, id_column)
        with self.core.transaction():
            rows.register(self.core, source.key, source.name, table_rows)
        return source.key

    @guarded
    def links(
        self, table, fingerprint: str, *, id_column: str | None = None, exclude: set[str] | frozenset[str] = frozenset()
    ) -> list:
        """Known sources whose people ``table`` holds (its rows hashed with the ledger's row key), strongest first."""
        return rows.links(self.core, rows.of_table(self.core, table, fingerprint, id_column), exclude=set(exclude))

    @guarded
    def record_artifacts(
        self,
        run_id: str,
        artifacts: dict[str, str],
        *,
        why: str,
        replaces: dict[str, str] | None = None,
        detail: dict | None = None,
    ) -> Entry:
        """Chain new hashes of a finished run's files (e.g. an audit appended to its model card); charges nothing.

        ``replaces`` names, per re-recorded file, the hash the ledger held before (see privtrain.artifacts.evidence);
        ``detail`` adds facts of the command (a key rotation's key ids).
        """
        from privtrain.ledger.run import _artifacts

        replaced = dict(sorted((replaces or {}).items()))
        return self._append_for_run(
            run_id,
            "artifacts",
            artifacts=_artifacts(artifacts),
            detail=json.dumps({**(detail or {}), "why": why, "replaces": replaced}),
        )

    @guarded
    def record_decision(self, run_id: str, status: str, detail: dict) -> Entry:
        """Chain a decision about a finished run (an approval, a registry push or rollback); charges nothing.

        Args:
            status: one of :data:`DECISIONS`.
            detail: what was decided (JSON-serialisable), chained as the entry's detail.

        Raises:
            UserError: the run has no committed entry here, or the ledger is read-only.
        """
        require(status in DECISIONS, f"Expected a decision status in {', '.join(DECISIONS)}, got {status!r}.")
        return self._append_for_run(run_id, status, detail=json.dumps(detail, sort_keys=True))

    def _append_for_run(self, run_id: str, status: str, **fields) -> Entry:
        """Chain an entry about a finished run (charging nothing), filed under the run's committed source and unit.

        Raises:
            UserError: the run has no committed entry here.
        """
        runs = [e for e in self.entries() if e.run_id == run_id and e.status == "committed"]
        require(bool(runs), f"run {run_id} has no committed entry in the ledger {self.path}.")
        first = runs[0]
        with self.core.transaction():
            return self.core.append(
                status=status,
                run_id=run_id,
                recipe=first.recipe,
                source=first.source,
                source_name=first.source_name,
                unit=first.unit,
                epsilon=0.0,
                delta=0.0,
                **fields,
            )

    @guarded
    def decisions(self, status: str, run_id: str | None = None) -> list[Entry]:
        """The chained decisions of one kind (:data:`DECISIONS`), optionally of one run, in chain order."""
        found = [store.to_entry(r) for r in self.core.backend.entries(statuses=(status,))]
        return [e for e in found if run_id is None or e.run_id == run_id]

    @guarded
    def role(self) -> str | None:
        """The database role this ledger is written as (PostgreSQL's ``current_user``); None for a file."""
        return self.core.backend.role()

    @guarded
    def provenance(self, source: str) -> consent.Provenance | None:
        """The provenance and consent declared for a source (name, key or prefix); None: none, or unknown source."""
        try:
            key = self.resolve(source)
        except UserError:
            return None
        return consent.current(self.core, key)

    @guarded
    def provenances(self) -> dict[str, tuple[str | None, consent.Provenance | None]]:
        """Every source with declared provenance: key -> (its name, the provenance in force)."""
        keys = dict.fromkeys(r["source"] for r in self.core.backend.entries(statuses=(consent.STATUS,)))
        return {k: (self.name(k), consent.current(self.core, k)) for k in keys}

    @guarded
    def set_provenance(self, source: str, *, reason: str, **facts) -> consent.Provenance:
        """Declare or change a source's provenance (collected_by, basis, purposes, retain_until, regions) as a
        chained entry naming the values it replaces; facts not given stay as recorded.

        Raises:
            UserError: no reason, a malformed value, or nothing would change.
        """
        key = self._admin_key(source)
        return consent.record(self.core, key, self.name(key) or _display(key), reason=reason, **facts)[1]

    def policy(self) -> dict | None:
        """The policy last recorded in the ledger: ``{"sha256", "file", "entry", "time"}``, or None."""
        return self.core.policy()

    @guarded
    def record_policy(self, sha256: str, file: str, text: str) -> Entry | None:
        """Chain a policy the ledger has not seen as its current one (first use, or a change); None if current."""
        with self.core.transaction():
            return self.core.record_policy(sha256, file, text)

    @guarded
    def register_derived(
        self,
        child_fingerprint: str,
        child_name: str,
        parent: str,
        run_id: str,
        events,
        epsilon: float,
        delta: float,
        unit: str,
    ) -> Lineage:
        """Record that ``child`` (synthetic data) was produced from source ``parent`` by run ``run_id``.

        ``events`` are the synthesizer's events (its charge on the parent, already made by that run),
        or a NonPrivateDpEvent for a non-DP synthesizer (ε = inf). Nothing new is charged.
        """
        with self.core.transaction():
            self.core.append_derived(child_fingerprint, child_name, parent, run_id, events, epsilon, delta, unit)
        return self.lineage(child_fingerprint)


def _display(key: str) -> str:
    return key if len(key) != 64 else key[:12]


__all__ = ["Ledger", "open", "default_path"]
