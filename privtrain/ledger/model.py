"""Plain values the ledger hands out: what a run asks for, and what the ledger knows.

Nothing here touches SQLite or dp-accounting; these are dataclasses and small
validators, so they import fast and compare by value.

Budgets are kept per (source, unit, scope): a source's example-level budget (scope ``""``), and
client-level budgets of each federated population of that source (scope = the population's key).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from privtrain.errors import UserError, require
from privtrain.sources import Source

UNITS = ("example", "client")
RUN_STATUSES = ("reserved", "committed", "failed")


def check_unit(unit: str) -> str:
    require(unit in UNITS, f"Expected unit={unit!r} to be one of {', '.join(UNITS)}.")
    return unit


def check_budget(
    epsilon: float | None, delta: float | None, n: int | None = None, *, what: str = "budget"
) -> tuple[float, float]:
    """Validate a budget (ε_max, δ); returns it as floats. ``n``: the source's known row count, when known:
    a budget's δ then obeys a run's rule, δ < 1/n (see :mod:`privtrain.ledger.rowcount`)."""
    if epsilon is None or delta is None:
        raise UserError(f"Expected a numeric budget, got epsilon={epsilon!r}, delta={delta!r}.")
    try:
        epsilon, delta = float(epsilon), float(delta)
    except (TypeError, ValueError):
        raise UserError(f"Expected a numeric budget, got epsilon={epsilon!r}, delta={delta!r}.") from None
    require(math.isfinite(epsilon) and epsilon > 0, f"Expected budget epsilon={epsilon:g} > 0 and finite.")
    require(0 < delta < 1, f"Expected budget delta={delta:g} in (0, 1).")
    if n:
        require(
            delta < 1.0 / n,
            f"{what} δ={delta:g} must lie below 1/n = {1.0 / n:.2e} for a source of {n} rows "
            f"(a larger δ admits publishing a row outright, as for a run); use e.g. δ="
            f"{min(1e-5, 10.0 ** math.floor(math.log10(0.1 / n))):.0e}.",
        )
    return epsilon, delta


@dataclass(frozen=True)
class LedgerSettings:
    """``ledger.*``: which ledger, and the run-level choices it enforces."""

    path: str | None = None
    allow_non_private: bool = False
    default_budget: tuple[float, float] | None = None  # set on a budget key's first use
    plan_only: bool = False
    policy: str | None = None  # a policy file; None: $PRIVTRAIN_POLICY, else policy.yaml beside the ledger


# --- what a run asks for ------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """A federated population: a source split into clients. Client-level budgets belong to it."""

    key: str  # a digest of the partitioning's public identity
    label: str  # what people read, e.g. "iid, 10 clients, partition seed 0"


@dataclass(frozen=True)
class Mechanism:
    """What a run does to the data at one unit: its events, δ and its own ε."""

    unit: str
    events: tuple
    delta: float
    epsilon: float
    population: Population | None = None  # required for the client unit

    def __post_init__(self) -> None:
        check_unit(self.unit)
        object.__setattr__(self, "events", tuple(self.events))
        require(
            self.unit != "client" or self.population is not None, "Expected a population for a client-level mechanism."
        )


@dataclass(frozen=True)
class Access:
    """What a run's plan says it will do to whose rows, before it reads any for training.

    ``table`` is the raw table (a pandas DataFrame): the ledger hashes its rows with its secret key to
    recognise people it already knows under another source. It never stores raw values.
    """

    source: Source
    fingerprint: str
    mechanisms: tuple[Mechanism, ...]
    table: Any = field(default=None, repr=False, compare=False)
    id_column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mechanisms", tuple(self.mechanisms))
        require(bool(self.mechanisms), "Expected at least one mechanism.")


@dataclass(frozen=True)
class RunRequest:
    """What a run asks of the ledger: its access, who asks (recipe, config) and under which rules.

    Built once per run, by :meth:`of`. ``policy`` is the run's evaluated policy
    (:class:`privtrain.policy.Evaluation`) or None; admission checks every charge against it.
    """

    run_id: str
    recipe: str
    config_hash: str
    access: Access
    allow_non_private: bool = False
    default_budget: tuple[float, float] | None = None
    policy: Any = field(default=None, compare=False)
    facts: Any = field(default=None, compare=False)  # privtrain.policy.RunFacts: purpose, regions (consent checks)

    @classmethod
    def of(
        cls, recipe: str, access: Access, *, config_hash: str, ledger: LedgerSettings, policy=None, facts=None
    ) -> RunRequest:
        """The run request of one run: a fresh run id, the run's ledger settings, its policy and its facts
        (default: the policy's; every charged source's recorded provenance is checked against them)."""
        import secrets

        return cls(
            run_id=f"{recipe}-{secrets.token_hex(6)}",
            recipe=recipe,
            config_hash=config_hash,
            access=access,
            allow_non_private=ledger.allow_non_private,
            default_budget=ledger.default_budget,
            policy=policy,
            facts=facts if facts is not None or policy is None else policy.facts,
        )


@dataclass(frozen=True)
class Charge:
    """One budget a run charges: (source, unit, scope), and the events applied there."""

    run_id: str
    recipe: str
    source: str  # the budget's source key
    source_name: str
    unit: str
    events: tuple  # tuple[DpEvent, ...]
    delta: float
    epsilon: float
    config_hash: str = ""
    fingerprint: str | None = None  # content fingerprint of the table the run used
    scope: str = ""  # "" for the whole source; a population key for client-level budgets
    scope_label: str = ""
    allow_non_private: bool = False
    default_budget: tuple[float, float] | None = None
    parent: str | None = None  # derived data: the source it was synthesized from
    link: str | None = None  # why this source is charged although the run did not name it
    rows: Any = field(default=None, repr=False, compare=False)  # TableRows to register with this source
    policy: str | None = None  # SHA-256 of the policy file the run was checked against (recorded in its entries)
    n_rows: int | None = None  # the source's rows known when charged (example level): a default budget's δ < 1/n

    def __post_init__(self) -> None:
        check_unit(self.unit)
        require(bool(self.run_id), "Expected a non-empty run_id.")
        require(bool(self.source), "Expected a non-empty source.")
        require(0 <= float(self.delta) < 1, f"Expected run delta={self.delta!r} in [0, 1).")
        require(
            not math.isnan(float(self.epsilon)) and float(self.epsilon) >= 0,
            f"Expected run epsilon={self.epsilon!r} >= 0.",
        )
        object.__setattr__(self, "events", tuple(self.events))
        if self.default_budget is not None:
            object.__setattr__(
                self,
                "default_budget",
                check_budget(
                    *self.default_budget,
                    self.n_rows,
                    what=f"the default budget (ledger.default_budget or a policy's "
                    f"max_epsilon_total at total_delta) of source {self.source_name!r}:",
                ),
            )

    @property
    def key(self) -> tuple[str, str, str]:
        return self.source, self.unit, self.scope

    def describe(self) -> str:
        where = f"source {self.source_name!r}"
        if self.scope:
            where += f", population {self.scope_label or self.scope[:12]}"
        return f"{where} ({self.unit} level)"


# --- what the ledger knows -------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    epsilon: float
    delta: float
    entry_id: int | None = None  # the ledger entry that set it; None for a default not yet written
    orders: tuple[float, ...] = ()  # the RDP filter's grid, frozen when the budget was created


@dataclass(frozen=True)
class Entry:
    """One row of the hash chain. ``status`` is reserved, committed, failed, budget, unbudget, derived, rows,
    accepted (recorded damage), migrated, artifacts or policy (a policy file first seen, or changed)."""

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
    source: str
    source_name: str | None
    scope: str
    scope_label: str | None
    unit: str
    dataset_fingerprint: str | None
    parent: str | None
    events_json: str
    rdp_json: str | None
    epsilon: float
    delta: float
    artifacts_json: str
    detail_json: str
    prev_hash: str
    hash: str

    @property
    def events(self) -> list:
        """The entry's DpEvents (imports dp-accounting)."""
        from privtrain.privacy import events as ev

        return ev.loads(self.events_json)

    @property
    def rdp(self) -> tuple[float, ...] | None:
        return None if self.rdp_json is None else tuple(float(x) for x in json.loads(self.rdp_json))

    @property
    def artifacts(self) -> dict[str, str]:
        return json.loads(self.artifacts_json)

    @property
    def detail(self) -> dict:
        return json.loads(self.detail_json)

    @property
    def reservation_id(self) -> int:
        return self.ref if self.ref is not None else self.id

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if not k.endswith("_json")}
        out.update(events=json.loads(self.events_json), rdp=self.rdp, artifacts=self.artifacts, detail=self.detail)
        return out


@dataclass(frozen=True)
class Lineage:
    """A dataset derived from a parent (synthetic data): its guarantee is inherited, not new."""

    child_fingerprint: str
    child_name: str | None
    parent: str  # the parent's source key
    parent_name: str | None
    run_id: str | None
    events_json: str
    epsilon: float
    delta: float
    unit: str
    entry_id: int | None = None

    @property
    def events(self) -> list:
        from privtrain.privacy import events as ev

        return ev.loads(self.events_json)

    def describe(self) -> str:
        eps = "inf (non-DP synthesizer)" if math.isinf(self.epsilon) else f"{self.epsilon:.4g}"
        return (
            f"derived from source {self.parent_name or self.parent[:12]!r} by run {self.run_id}: inherits "
            f"ε={eps} at δ={self.delta:g} per {self.unit}; runs on it add no charge to the parent"
        )


@dataclass(frozen=True)
class Link:
    """A known source that shares rows with a run's table (found with keyed row hashes)."""

    source: str
    name: str
    reason: str  # e.g. "92% of these rows belong to source `patients` (exact row match)"
    fraction_of_new: float
    fraction_of_known: float


@dataclass(frozen=True)
class SourceSummary:
    """What one budget key has spent: the tight PLD estimate and the RDP filter's certified figure."""

    source: str
    name: str | None
    unit: str
    scope: str
    scope_label: str | None
    budget: Budget | None
    delta: float | None  # the δ at which spent is reported (the budget's, else the runs' largest)
    spent: float  # tight PLD estimate of the composition
    filter_epsilon: float | None  # what the RDP filter certifies at the budget's δ (None without a budget)
    naive_sum: float
    remaining: float | None  # budget minus the filter's figure (what admission uses)
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


@dataclass(frozen=True)
class Plan:
    """The pre-flight answer for one charge, as plain data.

    Admission uses the RDP filter (``filter_before``/``filter_after``: what it certifies at the budget's δ),
    computed under the write lock. The tight PLD estimates shown beside it (``spent``, ``after``,
    ``planned``) and ``max_epsilon`` are filled in by :func:`privtrain.ledger.admission.estimate`, outside
    the lock; they are None until then.
    """

    charge: Charge
    budget: Budget | None
    delta: float  # δ at which the PLD estimates are reported
    lineage: Lineage | None
    budget_is_default: bool
    n_runs: int
    upto: int = 0  # the newest entry of the key this plan read
    filter_before: float | None = None
    filter_after: float | None = None
    refusal: str | None = None  # why the run may not start (None: it may)
    spent_rdp: tuple[float, ...] = field(default=(), repr=False)  # the filter's sum before the run
    runs: tuple = field(default=(), repr=False, compare=False)  # the key's RunCharges this plan read
    spent: float | None = None  # tight (PLD) ε already spent on the budget key, at the plan's δ
    after: float | None = None  # tight (PLD) ε of everything spent plus this run
    planned: float | None = None  # tight (PLD) ε of the planned events alone
    max_epsilon: float | None = None  # largest ε (at the run's δ) the filter would still admit; inf without a budget

    @property
    def fits(self) -> bool:
        return self.refusal is None

    @property
    def remaining(self) -> float | None:
        """What the filter leaves before this run: budget ε minus the filter's certified ε."""
        if self.budget is None:
            return None
        return max(0.0, self.budget.epsilon - (self.filter_before or 0.0))

    @property
    def remaining_after(self) -> float | None:
        if self.budget is None or self.filter_after is None:
            return None
        return max(0.0, self.budget.epsilon - self.filter_after)
