"""What a budget key has spent: its runs' charged events, composed once and cached (the PLD estimate).

A run is charged its committed events if it committed, else its reservation
(reserved, or failed: it touched the data). Composition uses dp-accounting's PLD
accountant (tight) and RDP (for comparison). Identical events are grouped, so a
sweep of 1,000 identical runs costs one self-composition.

The cache is keyed by a digest of the *multiset of events* plus the accountant
and δ, so a cached value can never be stale: any new, edited or removed charge
changes the key. dp-accounting is imported only on a cache miss, which keeps
``ledger show`` fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from privtrain.ledger.model import Entry
from privtrain.ledger.store import BUSY_TIMEOUT_S

PLD_DISCRETIZATION = 1e-4


@dataclass(frozen=True)
class RunCharge:
    """One run's charge: the events it is charged for and its own ε."""

    reservation_id: int
    run_id: str | None
    status: str  # the latest status: reserved, committed or failed
    events_json: str
    epsilon: float
    delta: float
    entry: Entry  # the entry whose events are charged

    @property
    def rdp(self) -> tuple[float, ...] | None:
        """The charged events' RDP curve on the filter's grid, as chained in the entry."""
        return self.entry.rdp


def charged_runs(entries: Iterable[Entry]) -> list[RunCharge]:
    """Fold run entries (in chain order) into one charge per reservation."""
    runs: dict[int, RunCharge] = {}
    for e in entries:
        if e.status == "reserved":
            runs[e.id] = RunCharge(e.id, e.run_id, "reserved", e.events_json, e.epsilon, e.delta, e)
        elif e.status in ("committed", "failed") and e.ref in runs:
            prev = runs[e.ref]
            if prev.status == "committed":
                continue  # a commit is final
            if e.status == "committed":
                runs[e.ref] = RunCharge(e.ref, e.run_id, "committed", e.events_json, e.epsilon, e.delta, e)
            else:  # failed: still charged at the reservation
                runs[e.ref] = RunCharge(e.ref, e.run_id, "failed", prev.events_json, prev.epsilon,
                                        prev.delta, prev.entry)
    return list(runs.values())


def event_counts(events_jsons: Iterable[str]) -> Counter:
    """The multiset of events, each as canonical JSON text."""
    counts: Counter = Counter()
    for text in events_jsons:
        for event in json.loads(text):
            counts[json.dumps(event, sort_keys=True, separators=(",", ":"))] += 1
    return counts


def digest(counts: Counter) -> str:
    return hashlib.sha256(json.dumps(sorted(counts.items())).encode()).hexdigest()


def _events(counts: Counter) -> list:
    import dp_accounting

    from privtrain.privacy import events as ev

    out = []
    for key, n in sorted(counts.items()):
        event = ev.from_json(json.loads(key))
        out.append(event if n == 1 else dp_accounting.SelfComposedDpEvent(event, n))
    return out


def compute(counts: Counter, delta: float, accountant: str,
            discretization: float = PLD_DISCRETIZATION) -> float:
    """ε of the composition of ``counts`` at ``delta``, without any cache."""
    if not counts:
        return 0.0
    if any('"NonPrivateDpEvent"' in k for k in counts):
        return math.inf
    from privtrain.privacy import events as ev

    if accountant == "pld":
        return ev.epsilon_pld(_events(counts), delta, discretization=discretization)
    absl = logging.getLogger("absl")  # RDP warns per order it drops; the result is still an upper bound
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return ev.epsilon_rdp(_events(counts), delta)
    finally:
        absl.setLevel(level)


class Composer:
    """Composition with a cache table in the ledger file (best effort: never blocks on a lock)."""

    def __init__(self, conn: sqlite3.Connection, *, writable: bool) -> None:
        self._conn = conn
        self._writable = writable

    def epsilon(self, counts: Counter, delta: float, accountant: str = "pld", *,
                fingerprint: str | None = None, unit: str | None = None,
                discretization: float = PLD_DISCRETIZATION) -> float:
        if not counts:
            return 0.0
        if any('"NonPrivateDpEvent"' in k for k in counts):
            return math.inf
        key = hashlib.sha256(f"{accountant}|{delta!r}|{discretization!r}|{digest(counts)}".encode()).hexdigest()
        row = self._conn.execute("SELECT value FROM cache WHERE key=?", (key,)).fetchone()
        if row is not None:
            return float(row[0])
        value = compute(counts, delta, accountant, discretization)
        self._store(key, fingerprint, unit, delta, accountant, value)
        return value

    def _store(self, key: str, fingerprint: str | None, unit: str | None, delta: float,
               accountant: str, value: float) -> None:
        if not self._writable:
            return
        sql = "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?, ?, ?)"
        args = (key, fingerprint, unit, delta, accountant, value,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if self._conn.in_transaction:  # we already hold the write lock
            self._conn.execute(sql, args)
            return
        try:  # another writer may hold the lock for seconds: skip rather than wait
            self._conn.execute("PRAGMA busy_timeout=50")
            self._conn.execute(sql, args)
        except sqlite3.OperationalError:
            pass
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={int(1000 * BUSY_TIMEOUT_S)}")


def naive_sum(runs: Sequence[RunCharge]) -> float:
    return float(sum(r.epsilon for r in runs))


def reporting_delta(budget_delta: float | None, runs: Sequence[RunCharge], extra: float | None = None) -> float | None:
    """The budget's δ; without a budget, the largest δ of the runs (the loosest guarantee among them)."""
    if budget_delta is not None:
        return budget_delta
    deltas = [r.delta for r in runs if r.delta > 0] + ([extra] if extra else [])
    return max(deltas) if deltas else None
