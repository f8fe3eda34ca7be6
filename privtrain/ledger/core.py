"""The ledger's state and its write primitives, with public names for the modules of this package.

:class:`Core` owns one storage backend and what this process knows of it: each budget key's charges
(brought up to date incrementally), the PLD totals cache and the composer. It is the only way the
ledger's sibling modules (admission, run, rows, migrate, integrity) read or write the chain:

- reading: :meth:`Core.budget`, :meth:`Core.key_state`, :meth:`Core.spent`, :meth:`Core.filter_sum`,
  :meth:`Core.lineage`, :meth:`Core.name`;
- writing: :meth:`Core.transaction` (one write transaction, the head anchored after it), or
  :meth:`Core.write` plus :meth:`Core.anchor` when a caller must decide between them; inside either,
  :meth:`Core.append` chains one entry.

The user-facing API (:class:`privtrain.ledger.api.Ledger`) and the run protocol are built on it; nothing
outside this package uses it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privtrain.errors import UserError, require
from privtrain.ledger import backends, compose, provenance, store, totals
from privtrain.ledger import filter as rdp_filter
from privtrain.ledger.model import Budget, Entry, Lineage, check_unit

BUILTIN_SOURCES = ("digits", "breast_cancer", "wine")
RUN_STATUSES = ("reserved", "committed", "failed")


def guarded(method):
    """A damaged file (or a lost database connection) surfaces as one clear UserError, not a traceback.

    Works on methods of :class:`Core` and of any class holding one as ``core``.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        backend = (self if isinstance(self, Core) else self.core).backend
        try:
            return method(self, *args, **kwargs)
        except backend.errors as exc:
            why = backend.damage(exc)
            if why is None:
                raise
            raise UserError(why) from None

    return wrapper


class Core:
    """One ledger's storage and this process's view of it. ``path`` is a file or a database URL."""

    #: After each commit, compose the source's spend so `ledger show` stays fast.
    warm_cache = True

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.backend = backends.open_backend(path, create=create)
        self.path: Path | str = self.backend.location if backends.is_url(str(path)) else Path(path)
        self.read_only = self.backend.read_only
        self.composer = compose.Composer(self.backend, writable=not self.read_only)
        self.totals = totals.Totals(self.backend, writable=not self.read_only)
        self._keys: dict[tuple[str, str, str], compose.KeyState] = {}

    @property
    def location(self) -> str:
        return self.backend.location

    # --- reading ----------------------------------------------------------------------------

    def budget(self, source: str, unit: str, scope: str = "") -> Budget | None:
        """The budget in force on (source, unit, scope), or None (never set, or removed)."""
        row = self.backend.latest(source=source, unit=unit, scope=scope, statuses=("budget", "unbudget"))
        if row is None or row["status"] == "unbudget":
            return None
        orders = tuple(json.loads(row["detail"]).get("orders") or rdp_filter.ORDERS)
        return Budget(row["epsilon"], row["delta"], row["id"], orders)

    def key_state(self, source: str, unit: str, scope: str = "") -> compose.KeyState:
        """The key's charges, brought up to date with the run entries written since the last read."""
        state = self._keys.setdefault((source, unit, scope), compose.KeyState())
        new = self.backend.entries(source=source, unit=unit, scope=scope, statuses=RUN_STATUSES, after=state.last_id)
        state.update([store.to_entry(r) for r in new])
        return state

    def runs(self, source: str, unit: str, scope: str = "") -> list[compose.RunCharge]:
        return self.key_state(source, unit, scope).runs

    def prime(self, rows: list[dict]) -> None:
        """Every key's charges from a verified walk of the whole chain (one snapshot): no second read."""
        by_key: dict[tuple[str, str, str], list] = {}
        for r in rows:
            if r["status"] in RUN_STATUSES:
                by_key.setdefault((r["source"], r["unit"], r["scope"] or ""), []).append(store.to_entry(r))
        self._keys.clear()
        for key, entries in by_key.items():
            self._keys[key] = state = compose.KeyState()
            state.update(entries)

    def spent(
        self, source: str, unit: str, scope: str, budget: Budget | None, accountant: str = "pld"
    ) -> tuple[float, float | None]:
        """(ε spent, the δ it is reported at): tight PLD by default, at the budget's δ."""
        state = self.key_state(source, unit, scope)
        runs = state.runs
        delta = compose.reporting_delta(budget.delta if budget else None, runs)
        if delta is None:
            return 0.0, None
        if accountant != "pld":
            counts = compose.event_counts(r.events_json for r in runs)
            return self.composer.epsilon(counts, delta, accountant, fingerprint=source, unit=unit), delta
        return self.totals.spent((source, unit, scope), runs, delta, state.last_id), delta

    def filter_sum(self, source: str, unit: str, scope: str, orders) -> tuple[float, ...]:
        """The filter's running sum over the key's charges: each run's chained RDP curve (recomputed on
        another grid), kept up to date incrementally."""
        return self.key_state(source, unit, scope).rdp_sum(tuple(orders), curve)

    def resolve(self, source: str) -> str:
        """A source's key from its key, its name, a fingerprint (prefix) of a table charged to it.

        A built-in name resolves before first use; so does any full 64-hex fingerprint.

        Raises:
            UserError: unknown or ambiguous.
        """
        require(bool(source), "Expected a source name or fingerprint, got an empty string.")
        rows_ = self.backend.source_names()
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
            raise UserError(
                f"source {source!r} is ambiguous: it matches {', '.join(sorted(m[:12] for m in matches))}; "
                "give a longer fingerprint prefix."
            )
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return text  # a content fingerprint not seen yet: fine for a budget set before first use
        names = sorted({r[1] or r[0][:12] for r in rows_})
        raise UserError(
            f"unknown source {source!r}: not in the ledger {self.path}"
            + (f"; known: {', '.join(names)}" if names else " (it is empty)")
            + "; give a built-in or declared source name, a fingerprint, or a file path."
        )

    def name(self, source: str) -> str | None:
        row = self.backend.latest(source=source, present="source_name")
        return row["source_name"] if row is not None else (source if source in BUILTIN_SOURCES else None)

    def scope_label(self, source: str, scope: str) -> str | None:
        row = self.backend.latest(source=source, scope=scope, present="scope_label")
        return None if row is None else row["scope_label"]

    def lineage(self, fingerprint: str | None) -> Lineage | None:
        """How a derived (synthetic) table inherits its guarantee, or None for original data."""
        if not fingerprint:
            return None
        row = self.backend.latest(fingerprint=fingerprint, statuses=("derived",))
        if row is None:
            return None
        e = store.to_entry(row)
        assert e.dataset_fingerprint is not None and e.parent is not None  # a derived entry names both
        return Lineage(
            e.dataset_fingerprint,
            e.source_name,
            e.parent,
            self.name(e.parent),
            e.run_id,
            e.events_json,
            e.epsilon,
            e.delta,
            e.unit,
            e.id,
        )

    def policy(self) -> dict | None:
        """The policy last recorded in the ledger: ``{"sha256", "file", "text", "replaces", "entry", "time"}``, or None."""
        row = self.backend.latest(statuses=("policy",))
        if row is None:
            return None
        last = store.to_entry(row)
        return dict(last.detail, entry=last.id, time=last.time)

    # --- writing ----------------------------------------------------------------------------

    def require_writable(self) -> None:
        require(
            not self.read_only,
            f"the ledger {self.path} is read-only: nothing can be charged or changed; "
            "fix its permissions or point PRIVTRAIN_LEDGER elsewhere.",
        )

    def require_intact(self) -> None:
        """Raise when the chain does not verify: a damaged ledger admits no run.

        The whole chain is walked once per process; later calls check only the entries appended since, the
        last verified entry and the head record (see :func:`privtrain.ledger.integrity.verify_tail`).
        """
        from privtrain.ledger import integrity

        report = integrity.verify_tail(self.backend, on_rows=self.prime)
        if not report.ok:
            raise UserError(
                f"the ledger {self.path} fails verification ({report.problem}); it admits no run until "
                "it is restored from a backup, or the damage is accepted as a recorded decision: "
                "privtrain ledger accept-damage --reason TEXT. Nothing was charged."
            )

    def append(self, **fields) -> Entry:
        """Chain one entry (inside :meth:`write` or :meth:`transaction`), stamped with who, when and which code."""
        from privtrain.ledger import integrity

        fields.setdefault("events", "[]")
        fields.setdefault("artifacts", "{}")
        fields.setdefault("detail", "{}")
        fields.update(provenance.stamp())
        return store.append(self.backend, fields, sign=integrity.signer(integrity.ledger_key()))

    @contextmanager
    def write(self) -> Iterator[None]:
        """The backend's write transaction (serialises writers); rolled back on any error."""
        try:
            with self.backend.write():
                yield
        except BaseException:
            self._keys.clear()  # what was read inside may include rows that were rolled back
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; rolled back on any error; the head is anchored after it."""
        self.require_writable()
        with self.write():
            yield
        self.anchor()

    def anchor(self) -> None:
        """After a write: remember the head outside the ledger (see ledger.integrity)."""
        from privtrain.ledger import integrity

        head_id, head_hash = self.backend.head_record()
        if head_hash:
            integrity.record_anchor(self.location, head_id, head_hash)

    def append_derived(
        self,
        child_fingerprint: str,
        child_name: str | None,
        parent: str,
        run_id: str | None,
        events,
        epsilon: float,
        delta: float,
        unit: str,
    ) -> None:
        """Chain that ``child`` was produced from source ``parent`` (inside a transaction)."""
        from privtrain.privacy import events as ev

        check_unit(unit)
        require(child_fingerprint != parent, "A derived dataset must differ from its parent.")
        events = list(events)
        if ev.is_non_private(events):
            epsilon = math.inf
        self.append(
            status="derived",
            source=child_fingerprint,
            source_name=child_name,
            dataset_fingerprint=child_fingerprint,
            unit=unit,
            parent=parent,
            run_id=run_id,
            events=ev.dumps(events),
            epsilon=float(epsilon),
            delta=float(delta),
        )

    def record_policy(self, sha256: str, file: str, text: str) -> Entry | None:
        """Chain a policy the ledger does not hold as its current one (first use, or a change), inside a
        transaction; None when it is already current."""
        current = self.policy()
        if current is not None and current.get("sha256") == sha256:
            return None
        return self.append(
            status="policy",
            source="ledger",
            unit="example",
            epsilon=0.0,
            delta=0.0,
            detail=json.dumps(
                {
                    "sha256": sha256,
                    "file": file,
                    "text": text,
                    "replaces": None if current is None else current["sha256"],
                }
            ),
        )

    def warm(self, source: str, unit: str, scope: str) -> None:
        """Compose the key's PLD spend now, so the next `ledger show` is served from the cache."""
        if not self.warm_cache:
            return
        try:
            self.spent(source, unit, scope, self.budget(source, unit, scope))
        except Exception:  # only a speed-up: never fail a commit over it
            pass


def curve(run: compose.RunCharge, orders: tuple[float, ...]) -> tuple[float, ...]:
    """A run's RDP curve on ``orders``: the chained one on the default grid, else recomputed from its events."""
    chained = run.rdp if run.rdp is not None and orders == rdp_filter.ORDERS else None
    return chained if chained is not None else rdp_filter.rdp_curve(run.events_json, orders)
