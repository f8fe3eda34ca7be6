"""What a run returns: metrics, its privacy guarantee(s), and where its artifacts went."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

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
        lines = [f"privtrain {self.recipe} on {self.dataset.get('name')} ({str(self.dataset.get('fingerprint', ''))[:12]})"]
        if self.dry_run:
            lines.append(self.ledger.get("plan", "dry run: nothing was trained or charged"))
            return "\n".join(lines)
        for key, label in (("quality_score", "quality"), ("tstr_accuracy", "TSTR"), ("trtr_accuracy", "TRTR")):
            if isinstance(self.metrics.get(key), float):
                lines.append(f"  {label:<11} {self.metrics[key]:.4f}")
        if "accuracy" in self.metrics:
            lines.append(f"  accuracy    {self.metrics['accuracy']:.4f}   (held-out split: the evaluator's data, not covered by the guarantee)")
        for g in self.guarantees:
            lines.append(f"  guarantee   {g.describe()}")
            lines.extend(f"  note        {n}" for n in g.notes)
        if self.ledger.get("remaining") is not None:
            lines.append(f"  budget      {self.ledger['remaining']:.3g} epsilon left for this dataset ({self.ledger.get('unit', 'example')} level)")
        if self.ledger.get("entry"):
            lines.append(f"  ledger      entry {self.ledger['entry']} in {self.ledger.get('path')}")
        lines.append(f"  artifacts   {self.output_dir}")
        return "\n".join(lines)
