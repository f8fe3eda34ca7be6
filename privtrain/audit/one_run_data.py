"""What the one-run audit trains: the planned configuration, on public rows only.

:func:`job_from_planned` reads a planned ``dp_sgd`` run (the recipe's ``plan``, which reads no row for
training and charges nothing) into an :class:`AuditJob` of plain values: the model, the resolved
training settings, the DP plan (σ, q, steps, C, accountant), the number of training rows the plan
used, the seed and the claim.

The audit's rows are public: a built-in dataset's own table (it ships with scikit-learn, so anyone
can read it) or, for any other dataset, rows drawn uniformly from its declared public schema (numbers
uniform on their public range, categories uniform, labels uniform). The white-box audit does not
depend on the rows at all (each canary owns a coordinate no row touches); the black-box audit's
canaries are judged against whatever the model learnt from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from privtrain.audit.settings import ONE_RUN_DATA as DATA
from privtrain.errors import UserError

if TYPE_CHECKING:
    from privtrain.data.schema import Schema
    from privtrain.models import ModelSpec
    from privtrain.privacy.dp_sgd import DpSgdPlan
    from privtrain.training import TrainSettings


@dataclass(frozen=True)
class AuditJob:
    """A planned dp_sgd run, as the audit retrains it."""

    model: ModelSpec
    n_inputs: int
    n_classes: int
    image_shape: tuple[int, ...] | None
    train: TrainSettings  # epochs resolved
    dp: DpSgdPlan
    rows: int  # training rows of the plan: the audit trains on exactly this many
    seed: int
    device: str
    claimed_epsilon: float  # math.inf when the run's guarantee is void
    void: tuple[str, ...]
    pool: tuple[np.ndarray, np.ndarray] | None  # a built-in's public table, or None: draw from the schema
    schema: Schema
    describe: dict

    @property
    def delta(self) -> float:
        return self.dp.delta


def job_from_planned(planned, data: str = "auto") -> AuditJob:
    """The audit job of a planned dp_sgd run (``privtrain.recipes.dp_sgd.plan``).

    Raises:
        UserError: the run is not DP-SGD (``privacy=none`` claims nothing to audit).
    """
    if data not in DATA:
        raise UserError(f"audit.one_run.data={data!r} is unknown; choose one of {', '.join(DATA)}.")
    s, dataset, dp = planned.settings, planned.dataset, planned.dp
    if dp is None:
        raise UserError(
            "privtrain audit --one-run audits DP-SGD; privacy=none claims no guarantee to audit (drop privacy=none)."
        )
    rows = training_rows(planned)
    batch = planned.train.batch_size
    if not any(math.isclose(dp.sample_rate, q, rel_tol=1e-9) for q in (1 / math.ceil(rows / batch), batch / rows)):
        raise RuntimeError(f"the audit's {rows} training rows do not give the plan's sampling rate {dp.sample_rate}")
    schema = dataset.schema
    pool = None
    if data == "auto" and dataset.source.kind == "builtin":
        pool = (schema.transform(dataset.frame), schema.encode_target(dataset.frame[dataset.target]))
    t = planned.train
    describe = {
        "summary": (
            f"dp_sgd on {dataset.name} ({s.model.name}, {t.grad_sample_mode} per-sample gradients, "
            f"{t.clipping} clipping, batch {t.batch_size})"
        ),
        "dataset": dataset.name,
        "source": dataset.source.key,
        "model": s.model.name,
        "config_hash": s.config_hash,
        "rows_from": "built-in table" if pool is not None else "public schema",
        "grad_sample_mode": planned.train.grad_sample_mode,
        "clipping": planned.train.clipping,
        "batch_size": planned.train.batch_size,
        "epochs": planned.train.epochs,
    }
    return AuditJob(
        s.model,
        schema.n_inputs,
        len(schema.classes),
        dataset.image_shape,
        planned.train,
        dp,
        rows,
        s.seed,
        s.device,
        claimed_epsilon(dp, planned.void),
        tuple(planned.void),
        pool,
        schema,
        describe,
    )


def training_rows(planned) -> int:
    """The training rows the plan's sampling rate and steps came from.

    A plan that records its public row count (``planned.public_rows``) is taken at its word; otherwise the
    recipe's own count of the training split is recomputed the same way.
    """
    public = getattr(planned, "public_rows", None)
    if public:
        return int(public)
    from privtrain.data.assign import held_out
    from privtrain.data.synthetic import RealHeldOut

    s, dataset = planned.settings, planned.dataset
    if isinstance(planned.evaluation, RealHeldOut):
        return dataset.n_rows
    return int((~held_out(dataset.frame, seed=s.seed, test_size=s.dataset.test_size)).sum())


def claimed_epsilon(dp, void) -> float:
    """The ε the run would claim: the plan's, by its accountant (for GDP, at least the PLD's, as the recipe)."""
    if void:
        return math.inf
    if dp.accountant == "gdp":
        from privtrain.privacy.events import epsilon_pld

        return max(dp.epsilon, epsilon_pld(list(dp.events), dp.delta))
    return float(dp.epsilon)


def public_rows(job: AuditJob, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` public rows (features as the model sees them, labels as class indices)."""
    if n <= 0:
        return np.zeros((0, job.n_inputs), np.float32), np.zeros(0, np.int64)
    if job.pool is not None:
        x, y = job.pool
        pick = rng.choice(len(y), size=n, replace=n > len(y))
        return x[pick].astype(np.float32), y[pick].astype(np.int64)
    return draw_from_schema(job.schema, job.image_shape, n, rng)


def draw_from_schema(schema, image_shape, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows uniform on the public schema: each number uniform on its range, each category (one-hot) uniform."""
    if image_shape is not None:
        x = rng.random((n, int(np.prod(image_shape))), dtype=np.float32)
    else:
        parts = []
        for col in schema.features:
            if col.is_categorical:
                parts.append(np.eye(len(col.categories), dtype=np.float32)[rng.integers(0, len(col.categories), n)])
            else:
                parts.append(rng.random((n, 1), dtype=np.float32))
        x = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.float32)
    return x, rng.integers(0, len(schema.classes), n).astype(np.int64)


def build_model(job: AuditJob):
    """The configured model, initialised from ``seed`` as the recipe does (public randomness)."""
    from privtrain import models

    models.seed_everything(job.seed)
    return models.build(job.model, n_inputs=job.n_inputs, n_classes=job.n_classes, image_shape=job.image_shape)


def train(job: AuditJob, model, x: np.ndarray, y: np.ndarray, instrument):
    """Train ``model`` as the planned run would (same settings, plan and seed), with ``instrument``."""
    from dataclasses import replace

    from privtrain import training

    return training.train(
        model,
        x,
        y,
        replace(job.train, progress=False),
        dp=job.dp,
        seed=job.seed,
        device=job.device,
        report_epsilon=False,
        instrument=instrument,
        desc="one-run audit",
    )
