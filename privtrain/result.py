"""What a run returns: metrics, its privacy guarantee(s), and where its artifacts went.

Also the two values that pass between the run protocol (:mod:`privtrain.api`) and a recipe:
:class:`Reserved` (what the ledger reserved, handed to the recipe) and :class:`Outcome` (what the
recipe did, which the ledger commits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privtrain.privacy.events import DpEvent, to_json


@dataclass(frozen=True)
class Guarantee:
    """An (epsilon, delta)-DP guarantee for one unit of privacy.

    Attributes:
        epsilon: ``math.inf`` for a non-private run.
        unit: ``"example"`` (one row) or ``"client"`` (one federated participant).
        accountant: the accountant that computed ``epsilon`` (e.g. ``"prv"``).
        events: the mechanism, as dp-accounting events.
        notes: caveats, e.g. a schema inferred from the private data.
    """

    epsilon: float
    delta: float
    unit: str
    accountant: str
    events: tuple[DpEvent, ...]
    notes: tuple[str, ...] = ()

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    def describe(self) -> str:
        if not self.private:
            return f"none: non-private (epsilon = inf) at the {self.unit} level"
        return f"({self.epsilon:.4g}, {self.delta:.1e})-DP per {self.unit} [{self.accountant} accountant]"

    def to_dict(self) -> dict:
        return {
            "epsilon": self.epsilon if self.private else "inf",
            "delta": self.delta,
            "unit": self.unit,
            "accountant": self.accountant,
            "events": [to_json(e) for e in self.events],
            "notes": list(self.notes),
        }


@dataclass
class RunResult:
    """The outcome of ``privtrain.run``: metrics, guarantees and the output directory."""

    recipe: str
    output_dir: Path
    metrics: dict
    guarantees: list[Guarantee]
    dataset: dict
    ledger: dict = field(default_factory=dict)
    dry_run: bool = False

    @property
    def guarantee(self) -> Guarantee:
        """The main guarantee (the first one; federated runs may carry two units)."""
        return self.guarantees[0]

    def summary(self) -> str:
        lines = [
            f"privtrain {self.recipe} on source {self.dataset.get('name')} "
            f"(table {str(self.dataset.get('fingerprint', ''))[:12]})"
        ]
        if self.dry_run:
            lines.append(self.ledger.get("plan", "dry run: nothing was trained or charged"))
            lines.append(f"  ledger      {self.ledger.get('path')} (dry run: nothing was trained or charged)")
            return "\n".join(lines)
        for key, label in (("quality_score", "quality"), ("tstr_accuracy", "TSTR"), ("trtr_accuracy", "TRTR")):
            if isinstance(self.metrics.get(key), float):
                lines.append(f"  {label:<11} {self.metrics[key]:.4f}")
        if "accuracy" in self.metrics:
            on = (
                self.dataset.get("evaluated_on")
                or "the held-out split (the evaluator's data, not covered by the guarantee)"
            )
            lines.append(f"  accuracy    {self.metrics['accuracy']:.4f}   (on {on})")
            more = [
                f"{label} {self.metrics[key]:.4f}"
                for key, label in (
                    ("balanced_accuracy", "balanced"),
                    ("macro_f1", "macro-F1"),
                    ("auc", "AUC"),
                    ("majority_baseline", "majority-class baseline"),
                )
                if isinstance(self.metrics.get(key), float)
            ]
            if more:
                lines.append(f"              {', '.join(more)}")
            if self.metrics.get("warning"):
                lines.append(f"  WARNING     {self.metrics['warning']}")
        for g in self.guarantees:
            lines.append(f"  guarantee   {g.describe()}")
            lines.extend(f"  note        {n}" for n in g.notes)
        for c in self.ledger.get("charges", []):
            where = f"source {c['name']}" + (f", population {c['population']}" if c.get("population") else "")
            if c.get("remaining") is not None:
                lines.append(
                    f"  budget      {c['remaining']:.3g} epsilon left for {where} ({c['unit']} level; admission filter)"
                )
            else:
                lines.append(f"  budget      none for {where} ({c['unit']} level): tracked, not enforced")
            if c.get("link"):
                lines.append(f"  linked      {c['link']}")
        if self.ledger.get("entry"):
            lines.append(f"  ledger      entry {self.ledger['entry']} in {self.ledger.get('path')}")
        lines.append(f"  artifacts   {self.output_dir}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Reserved:
    """What the ledger reserved for a run, as the recipe sees it (it cannot commit or change it)."""

    run_id: str
    source: str  # the key of the source the run is charged to (after the ledger recognised its rows)
    source_name: str
    lineage: Any  # privtrain.ledger.Lineage when the run's table is derived (synthetic) data, else None
    summary: Callable[[], dict]  # the ledger's summary of every charge after this run
    sbom: dict | None = None  # the environment's SBOM and licence summary (privtrain.artifacts.sbom), for the card


@dataclass
class Outcome:
    """What a recipe did: the API commits ``events`` (per unit) with the hashes of ``files``."""

    result: RunResult
    events: dict  # {"example": (DpEvent, ...), "client": (...)}
    files: list[Path]
    epsilon: dict | None = None  # the run's own ε per unit, by its accountant
    derived: Any = None  # a privtrain.ledger.Lineage for synthetic rows the run wrote
