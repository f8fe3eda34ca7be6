"""The files every finished run leaves in its folder, written in one place for every recipe.

A recipe describes what it did as a :class:`RunFiles` value, and :func:`write` turns it into:

- ``config.yaml``: the composed config, as the run read it;
- the checkpoint (when the recipe hands one over), through :func:`privtrain.artifacts.checkpoint.save`;
- ``run.json``: the :class:`~privtrain.artifacts.record.RunRecord` (the audit, resume and ``privtrain.load`` read it);
- ``metrics.json``: metrics, guarantees, dataset and ledger summary, plus the recipe's own keys;
- ``model_card.md``: the card, from the common facts plus the recipe's own arguments to
  :func:`privtrain.artifacts.model_card.render`.

Files only a recipe writes (synthetic rows, plots, reports) stay with it; it lists them with these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from privtrain.artifacts import checkpoint, model_card
from privtrain.artifacts.record import RunRecord
from privtrain.artifacts.run_dir import write_json, write_text

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from privtrain.data import Dataset, DatasetSpec
    from privtrain.ledger import Access
    from privtrain.ledger.model import LedgerSettings
    from privtrain.result import Guarantee, Reserved


class RunSettingsLike(Protocol):
    """What the run files read of :class:`privtrain.config.RunSettings` (a layer above this one)."""

    @property
    def seed(self) -> int: ...
    @property
    def config_hash(self) -> str: ...
    @property
    def config_yaml(self) -> str: ...
    @property
    def dataset(self) -> DatasetSpec: ...
    @property
    def ledger(self) -> LedgerSettings: ...
    @property
    def audit(self) -> DataclassInstance: ...


@dataclass(frozen=True)
class RunFiles:
    """A finished run, as values: what :func:`write` puts in its folder.

    Attributes:
        recipe: the recipe's name.
        settings: the run's typed settings.
        reserved: what the ledger reserved (run id, source, SBOM).
        access: the planned access (the table's fingerprint and its source's kind).
        ledger: ``reserved.summary()``, taken once by the recipe (it also goes into the result).
        dataset: the dataset facts the card and ``metrics.json`` show.
        guarantees: the run's guarantees, its own last.
        metrics: the published metrics.
        record: :class:`RunRecord` fields beyond the common ones (``model``, ``train``, ``dp``, ``outputs``, ...).
        metrics_json: ``metrics.json`` keys beyond the common ones.
        card: :func:`~privtrain.artifacts.model_card.render` arguments beyond the common ones (``intended_use``,
            ``model``, ``mechanism``, ``not_covered``, ...); they override the common ones.
        checkpoint: saved as ``record["outputs"]["checkpoint"]`` when given.
    """

    recipe: str
    settings: RunSettingsLike
    reserved: Reserved
    access: Access
    ledger: dict
    dataset: dict
    guarantees: list[Guarantee]
    metrics: dict
    record: dict = field(default_factory=dict)
    metrics_json: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict)
    checkpoint: Any = None

    def run_record(self) -> RunRecord:
        s, reserved = self.settings, self.reserved
        return RunRecord(
            recipe=self.recipe,
            run_id=reserved.run_id,
            seed=s.seed,
            config_hash=s.config_hash,
            fingerprint=self.access.fingerprint,
            source={"key": reserved.source, "name": reserved.source_name, "kind": self.access.source.kind},
            dataset=s.dataset.to_dict(),
            guarantees=[g.to_dict() for g in self.guarantees],
            audit=asdict(s.audit),
            ledger={
                "path": self.ledger["path"],
                "allow_non_private": s.ledger.allow_non_private,
                "default_budget": s.ledger.default_budget,
                "governance": self.ledger.get("governance"),
            },
            **self.record,
        )

    def metrics_document(self) -> dict:
        return {
            "recipe": self.recipe,
            "metrics": self.metrics,
            "guarantee": self.guarantees[0].to_dict(),
            "guarantees": [g.to_dict() for g in self.guarantees],
            "dataset": self.dataset,
            "ledger": self.ledger,
            **self.metrics_json,
        }

    def card_text(self) -> str:
        common = {
            "recipe": self.recipe,
            "dataset": self.dataset,
            "guarantees": self.guarantees,
            "metrics": self.metrics,
            "ledger": self.ledger,
            "sbom": self.reserved.sbom,
        }
        return model_card.render(**{**common, **self.card})


def schema_record(dataset: Dataset) -> dict:
    """The public preprocessing, as run.json records it: ``privtrain.load`` rebuilds the model from it and the model
    spec, and preprocesses new rows with it."""
    return {
        **dataset.schema.to_dict(),
        "target": dataset.target,
        "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
    }


def write(out: Path, run: RunFiles) -> list[Path]:
    """Write the run's common files into ``out``.

    Returns:
        The paths written (the ledger records their hashes).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = run.run_record()
    files = [write_text(out / "config.yaml", run.settings.config_yaml)]
    if run.checkpoint is not None:
        files.append(checkpoint.save(run.checkpoint, out / record.outputs["checkpoint"]))
    files.append(record.write(out))
    files.append(write_json(out / "metrics.json", run.metrics_document()))
    files.append(model_card.write(out / "model_card.md", run.card_text()))
    return files
