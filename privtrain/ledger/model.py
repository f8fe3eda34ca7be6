"""Plain values the ledger hands out: what a run asks for, and what the ledger knows.

Nothing here touches SQLite or dp-accounting; these are dataclasses and small
validators, so they import fast and compare by value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from privtrain.errors import UserError, require

UNITS = ("example", "client")
RUN_STATUSES = ("reserved", "committed", "failed")


def check_unit(unit: str) -> str:
    require(unit in UNITS, f"Expected unit={unit!r} to be one of {', '.join(UNITS)}.")
    return unit


def check_budget(epsilon: float, delta: float) -> tuple[float, float]:
    """Validate a budget (ε_max, δ); returns it as floats."""
    try:
        epsilon, delta = float(epsilon), float(delta)
    except (TypeError, ValueError):
        raise UserError(f"Expected a numeric budget, got epsilon={epsilon!r}, delta={delta!r}.") from None
    require(math.isfinite(epsilon) and epsilon > 0, f"Expected budget epsilon={epsilon:g} > 0 and finite.")
    require(0 < delta < 1, f"Expected budget delta={delta:g} in (0, 1).")
    return epsilon, delta


@dataclass(frozen=True)
class Charge:
    """What a run asks the ledger for, computed from its config before it reads data."""

    run_id: str
    recipe: str
    dataset_fingerprint: str
    dataset_name: str
    unit: str
    events: tuple  # tuple[DpEvent, ...]
    delta: float
    epsilon: float
    config_hash: str
    allow_non_private: bool = False
    default_budget: tuple[float, float] | None = None
    parent_fingerprint: str | None = None

    def __post_init__(self) -> None:
        check_unit(self.unit)
        require(bool(self.run_id), "Expected a non-empty run_id.")
        require(bool(self.dataset_fingerprint), "Expected a non-empty dataset_fingerprint.")
        require(0 <= float(self.delta) < 1, f"Expected run delta={self.delta!r} in [0, 1).")
        require(not math.isnan(float(self.epsilon)) and float(self.epsilon) >= 0,
                f"Expected run epsilon={self.epsilon!r} >= 0.")
        object.__setattr__(self, "events", tuple(self.events))
        if self.default_budget is not None:
            object.__setattr__(self, "default_budget", check_budget(*self.default_budget))


@dataclass(frozen=True)
class Budget:
    epsilon: float
    delta: float
    entry_id: int | None = None  # the ledger entry that set it; None for a default not yet written


@dataclass(frozen=True)
class Entry:
    """One row of the hash chain. ``status`` is reserved, committed, failed, budget or derived."""

    id: int
    ref: int | None  # for committed/failed: the id of the run's reservation
    status: str
    run_id: str | None
    time: str
    user: str | None
    version: str | None
    git_commit: str | None
    recipe: str | None
    config_hash: str | None
    dataset_fingerprint: str
    dataset_name: str | None
    unit: str
    parent_fingerprint: str | None
    events_json: str
    epsilon: float
    delta: float
    artifacts_json: str
    prev_hash: str
    hash: str

    @property
    def events(self) -> list:
        """The entry's DpEvents (imports dp-accounting)."""
        from privtrain.privacy import events as ev

        return ev.loads(self.events_json)

    @property
    def artifacts(self) -> dict[str, str]:
        return json.loads(self.artifacts_json)

    @property
    def reservation_id(self) -> int:
        return self.ref if self.ref is not None else self.id

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if not k.endswith("_json")}
        out["events"] = json.loads(self.events_json)
        out["artifacts"] = self.artifacts
        return out


@dataclass(frozen=True)
class Lineage:
    """A dataset derived from a parent (synthetic data): its guarantee is inherited, not new."""

    child_fingerprint: str
    child_name: str | None
    parent_fingerprint: str
    parent_name: str | None
    run_id: str | None
    events_json: str
    epsilon: float
    delta: float
    unit: str
    entry_id: int

    @property
    def events(self) -> list:
        from privtrain.privacy import events as ev

        return ev.loads(self.events_json)

    def describe(self) -> str:
        eps = "inf (non-DP synthesizer)" if math.isinf(self.epsilon) else f"{self.epsilon:.4g}"
        return (f"derived from {self.parent_name or '?'} ({self.parent_fingerprint[:12]}) by run "
                f"{self.run_id}: inherits ε={eps} at δ={self.delta:g} per {self.unit}; "
                f"runs on it add no charge to the parent")


@dataclass(frozen=True)
class DatasetSummary:
    fingerprint: str
    name: str | None
    unit: str
    budget: Budget | None
    delta: float | None  # the δ at which spent is reported (the budget's, else the runs' largest)
    spent: float  # tight (PLD)
    spent_rdp: float
    naive_sum: float
    remaining: float | None
    n_runs: int
    lineage: Lineage | None = None

    @property
    def enforced(self) -> bool:
        return self.budget is not None


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    n_entries: int
    first_bad: int | None = None  # id of the first entry that fails, or None
    problem: str = ""

    @property
    def message(self) -> str:
        if self.ok:
            return f"ledger ok: {self.n_entries} entries, hash chain intact"
        return f"ledger TAMPERED: {self.problem}"


@dataclass
class Plan:
    """The pre-flight answer for one charge. ``planned`` and ``max_epsilon`` are computed on first use."""

    charge: Charge
    budget: Budget | None
    delta: float  # δ at which spent/after are reported
    lineage: Lineage | None
    budget_is_default: bool
    n_runs: int
    refusal: str | None = None  # why the run may not start (None: it may)
    _spent: Callable[[], float] = field(default=lambda: 0.0, repr=False, compare=False)
    _after: Callable[[], float] = field(default=lambda: 0.0, repr=False, compare=False)
    _planned: Callable[[], float] = field(default=lambda: 0.0, repr=False, compare=False)
    _max_epsilon: Callable[[], float | None] = field(default=lambda: None, repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return self.refusal is None

    @cached_property
    def spent(self) -> float:
        """Tight ε already spent on (dataset, unit), at the plan's δ."""
        return self._spent()

    @cached_property
    def after(self) -> float:
        """Tight ε of everything spent plus this run, at the plan's δ."""
        return self._after()

    @property
    def remaining(self) -> float | None:
        return None if self.budget is None else max(0.0, self.budget.epsilon - self.spent)

    @cached_property
    def planned(self) -> float:
        """Tight ε of the planned events alone, at the plan's δ."""
        return self._planned()

    @cached_property
    def max_epsilon(self) -> float | None:
        """Largest ε (at the run's δ) this run could use and still fit; inf without a budget;
        None when its events have no noise to scale (e.g. non-private)."""
        return self._max_epsilon()

    def render(self) -> str:
        from privtrain.ledger.render import render_plan

        return render_plan(self)
