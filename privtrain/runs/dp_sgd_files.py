"""What a finished dp_sgd run writes: its dataset facts and :class:`~privtrain.artifacts.run_files.RunFiles`."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from privtrain import models
from privtrain.artifacts import checkpoint_ledger, model_card, run_files
from privtrain.runs import dp_sgd as parts
from privtrain.runs import resume as resuming

if TYPE_CHECKING:
    from privtrain.data import Dataset, Splits
    from privtrain.data.synthetic import RealHeldOut
    from privtrain.ledger import Access
    from privtrain.privacy.clipping_mode import ClippingMode
    from privtrain.privacy.dp_sgd import DpSgdPlan
    from privtrain.result import Reserved
    from privtrain.training import TrainOutcome, TrainSettings


class Planned(Protocol):
    """What the files need of the recipe's plan (:class:`privtrain.recipes.dp_sgd.Planned`, a layer above)."""

    @property
    def settings(self) -> Any: ...  # privtrain.config.RunSettings (a layer above)
    @property
    def dataset(self) -> Dataset: ...
    @property
    def train(self) -> TrainSettings: ...
    @property
    def dp(self) -> DpSgdPlan | None: ...
    @property
    def resume(self) -> dict | None: ...
    @property
    def access(self) -> Access: ...
    @property
    def public_rows(self) -> int | None: ...
    @property
    def clipping_mode(self) -> ClippingMode | None: ...


INTENDED_USE = (
    "A classifier trained with privtrain's `dp_sgd` recipe. Intended for research, benchmarking and "
    "as a template for private training. Check the guarantee below before releasing the model."
)


def dataset_info(dataset: Dataset) -> dict:
    """The dataset facts a plan knows before training (the card and metrics.json show them)."""
    return {
        "name": dataset.name,
        "source": dataset.source.key,
        "fingerprint": dataset.fingerprint,
        "n_rows": dataset.n_rows,
        "pii": dataset.pii,
    }


def run_info(
    planned_info: dict, reserved: Reserved, splits: Splits, dataset: Dataset, evaluation: RealHeldOut | str | None
) -> dict:
    """The plan's dataset facts with the charged source and the split's sizes."""
    return dict(
        planned_info,
        name=reserved.source_name,
        source=reserved.source,
        n_train=splits.n_train,
        n_test=len(splits.y_test),
        schema=dataset.schema.source,
        evaluated_on=parts.evaluated_on(evaluation),
    )


def run_files_of(
    p: Planned,
    reserved: Reserved,
    outcome: TrainOutcome,
    info: dict,
    guarantees: list,
    metrics: dict,
    ledger_info: dict,
    extra_metrics: dict,
) -> run_files.RunFiles:
    """config.yaml, checkpoint.pt, run.json, metrics.json and the card of this run."""
    s, dp, dataset = p.settings, p.dp, p.dataset
    assert s.model is not None
    state = parts.checkpoint_state(
        s,
        outcome,
        dp,
        guarantees[-1],
        dataset,
        resuming.prior_steps(p.resume),
        checkpoint_ledger.stamp(s.ledger.path, reserved.run_id),
    )  # a resume continues there
    dp_info = parts.dp_info(dp, p.train, outcome.steps, p.public_rows, p.clipping_mode)
    described = models.describe(outcome.model, s.model)
    return run_files.RunFiles(
        "dp_sgd",
        s,
        reserved,
        p.access,
        ledger_info,
        info,
        guarantees,
        metrics,
        checkpoint=state,
        record={
            "model": models.record(outcome.model, s.model),
            "train": asdict(p.train),
            "dp": dp_info,
            "outputs": {"checkpoint": "checkpoint.pt"},
            "schema": run_files.schema_record(dataset),
        },
        metrics_json={"dp": dp_info, **extra_metrics},  # fairness (held-out split), the references' ε
        card={
            "intended_use": INTENDED_USE,
            "not_covered": model_card.OPACUS_NOT_COVERED + models.not_covered(outcome.model),
            "lineage": reserved.lineage.describe() if reserved.lineage is not None else None,
            "model": f"{described}; weights are the EMA of the DP iterates"
            if dp
            else f"{described}, trained without DP",
            "mechanism": parts.mechanism(dp, p.train, outcome.steps, p.clipping_mode),
        },
    )
