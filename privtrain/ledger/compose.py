"""What a budget key has spent: its runs' charged events, and their composition (the PLD estimate).

A run is charged its committed events if it committed, else its reservation
(reserved, or failed: it touched the data). Composition uses dp-accounting's PLD
accountant (tight) and RDP (for comparison). Identical events are grouped, so a
sweep of 1,000 identical runs costs one self-composition.

:class:`KeyState` keeps a key's charges up to date incrementally (entries are
append-only: only entries after the last one seen are read) with the filter's
running RDP sums. :class:`Composer` caches a composition keyed by a digest of the
*multiset of events* plus the accountant and δ, so a cached value can never be
stale: any new, edited or removed charge changes the key. The reported spend of a
whole key is composed incrementally onto stored totals (:mod:`privtrain.ledger.totals`).
dp-accounting is imported only when something has to be composed, which keeps
``ledger show`` fast.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from privtrain.ledger.model import Entry

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

    @cached_property
    def rdp(self) -> tuple[float, ...] | None:
        """The charged events' RDP curve on the filter's grid, as chained in the entry."""
        return None if self.entry.rdp_json is None else _parse_curve(self.entry.rdp_json)


@functools.lru_cache(maxsize=4096)
def _parse_curve(text: str) -> tuple[float, ...]:
    """A chained RDP curve (JSON; "inf" for infinity), parsed once per distinct text (a sweep repeats one)."""
    return tuple(float(x) for x in json.loads(text))


def fold(runs: dict[int, RunCharge], entries: Iterable[Entry]) -> bool:
    """Fold run entries (in chain order) into one charge per reservation, in place.

    Returns True when an already-known charge changed its RDP curve (a commit with other events).
    """
    changed = False
    for e in entries:
        if e.status == "reserved":
            runs[e.id] = RunCharge(e.id, e.run_id, "reserved", e.events_json, e.epsilon, e.delta, e)
        elif e.status in ("committed", "failed") and e.ref in runs:
            prev = runs[e.ref]
            if prev.status == "committed":
                continue  # a commit is final
            if e.status == "committed":
                runs[e.ref] = RunCharge(e.ref, e.run_id, "committed", e.events_json, e.epsilon, e.delta, e)
                changed = changed or e.rdp_json != prev.entry.rdp_json or e.events_json != prev.events_json
            else:  # failed: still charged at the reservation
                runs[e.ref] = RunCharge(
                    e.ref, e.run_id, "failed", prev.events_json, prev.epsilon, prev.delta, prev.entry
                )
    return changed


def charged_runs(entries: Iterable[Entry]) -> list[RunCharge]:
    """One charge per reservation, from run entries in chain order."""
    runs: dict[int, RunCharge] = {}
    fold(runs, entries)
    return list(runs.values())


class KeyState:
    """One budget key's charges, brought up to date by reading only the entries after the last one seen.

    Entries are append-only and appended under the write lock, so they become visible in id order. The
    filter's running RDP sums are kept per grid of orders and extended with the new runs only.
    """

    def __init__(self) -> None:
        self.last_id = 0
        self._runs: dict[int, RunCharge] = {}
        self._sums: dict[tuple[float, ...], tuple[int, tuple[float, ...]]] = {}

    def update(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        if fold(self._runs, entries):
            self._sums.clear()  # a charge changed in place: the running sums start over
        self.last_id = max(self.last_id, entries[-1].id)

    @property
    def runs(self) -> list[RunCharge]:
        return list(self._runs.values())

    def rdp_sum(self, orders: tuple[float, ...], curve) -> tuple[float, ...]:
        """Σ curve(run) over the charges, added in run order (as :func:`privtrain.ledger.filter.add` does,
        pairwise); ``curve(run, orders)`` gives one run's RDP curve."""
        done, total = self._sums.get(orders, (0, (0.0,) * len(orders)))
        runs = self.runs
        for r in runs[done:]:
            total = tuple(a + b for a, b in zip(total, curve(r, orders)))  # inf + x = inf; curves are ≥ 0
        self._sums[orders] = (len(runs), total)
        return total


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


def compute(counts: Counter, delta: float, accountant: str, discretization: float = PLD_DISCRETIZATION) -> float:
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
    """Composition of a multiset of events, cached in the ledger (best effort: never blocks on a lock)."""

    def __init__(self, backend, *, writable: bool) -> None:
        self._backend = backend
        self._writable = writable

    def epsilon(
        self,
        counts: Counter,
        delta: float,
        accountant: str = "pld",
        *,
        fingerprint: str | None = None,
        unit: str | None = None,
        discretization: float = PLD_DISCRETIZATION,
    ) -> float:
        if not counts:
            return 0.0
        if any('"NonPrivateDpEvent"' in k for k in counts):
            return math.inf
        key = hashlib.sha256(f"{accountant}|{delta!r}|{discretization!r}|{digest(counts)}".encode()).hexdigest()
        cached = self._backend.cache_get(key)
        if cached is not None:
            return cached
        value = compute(counts, delta, accountant, discretization)
        if self._writable:
            self._backend.cache_put(key, fingerprint, unit, delta, accountant, value)
        return value


def naive_sum(runs: Sequence[RunCharge]) -> float:
    return float(sum(r.epsilon for r in runs))


def reporting_delta(budget_delta: float | None, runs: Sequence[RunCharge], extra: float | None = None) -> float | None:
    """The budget's δ; without a budget, the largest δ of the runs (the loosest guarantee among them)."""
    if budget_delta is not None:
        return budget_delta
    deltas = [r.delta for r in runs if r.delta > 0] + ([extra] if extra else [])
    return max(deltas) if deltas else None
