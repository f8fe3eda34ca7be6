"""The pieces of the ``dp_sgd`` recipe (:mod:`privtrain.recipes.dp_sgd`): its settings checks, public
training size, void guarantees and mechanism plan before the charge; its guarantee, checkpoint and the
facts its run files report after training.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from privtrain.data.assign import held_out
from privtrain.data.synthetic import RealHeldOut
from privtrain.errors import UserError
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.events import DpEvent, non_private_event
from privtrain.result import Guarantee

if TYPE_CHECKING:
    import pandas as pd

    from privtrain.data import Dataset, Splits
    from privtrain.ledger import Lineage
    from privtrain.privacy.clipping_mode import ClippingMode
    from privtrain.privacy.dp_sgd import DpSgdPlan
    from privtrain.training import TrainOutcome, TrainSettings

# --- before the charge -------------------------------------------------------------------------------


def check_settings(s) -> None:
    """Every dp_sgd setting a user can get wrong, before anything is read or charged: the privacy group, the
    device (a GPU that is not there), mixed precision, and ``recipe.grad_sample_mode`` / ``recipe.clipping``.

    Raises:
        UserError: a federated privacy group, a missing device, an unknown mode, or ghost clipping with per-layer
            clipping or (under DP) mixed precision.
    """
    from privtrain import devices

    if s.privacy.name not in ("dp", "none"):
        raise UserError(
            f"privacy={s.privacy.name} is for the federated recipe; dp_sgd takes privacy=dp or privacy=none."
        )
    device = devices.resolve(s.device)
    train = s.train
    if train.amp:
        devices.check_amp(device)
    if train.grad_sample_mode not in dp_plan.GRAD_SAMPLE_MODES:
        raise UserError(
            f"recipe.grad_sample_mode={train.grad_sample_mode!r} is unknown; choose one of "
            f"{', '.join(dp_plan.GRAD_SAMPLE_MODES)}."
        )
    if train.clipping not in dp_plan.CLIPPING:
        raise UserError(f"recipe.clipping={train.clipping!r} is unknown; choose one of {', '.join(dp_plan.CLIPPING)}.")
    if train.grad_sample_mode == "ghost" and train.clipping == "per_layer":  # auto picks hooks there instead
        raise UserError(
            "recipe.grad_sample_mode=ghost supports recipe.clipping=flat only (Opacus' ghost clipping "
            "computes one norm per example); use recipe.clipping=flat, or grad_sample_mode=hooks."
        )
    if train.amp and train.grad_sample_mode == "ghost" and s.privacy.private:
        raise UserError(dp_plan.AMP_GHOST)


NO_PUBLIC_SIZE = (
    "dataset.public_n is not set: DP-SGD fixes its sampling rate, steps and delta from a public row count, "
    "never from the rows it reads (one row more or less would otherwise run another mechanism); declare "
    "the table's approximate size, known without reading it, e.g. dataset.public_n=3000 (docs/privacy.md)."
)


def training_rows(s, dataset: Dataset, evaluation: RealHeldOut | str | None, *, public: bool) -> int:
    """The number of training rows the plan uses: a public one if declared, and always under DP
    (``public``); otherwise (no guarantee to keep) the rows read.

    The public size is ``dataset.public_n`` (the built-ins' configs state their published sizes), a
    custom dataset's declared ``dataset.size``, or the row count of released synthetic rows. The
    training split keeps each row independently with probability 1 - test_size
    (:mod:`privtrain.data.assign`), so its public size is the expected share. Without DP, the rows read.

    Raises:
        UserError: ``public`` and no public size.
    """
    spec = s.dataset
    size = spec.public_n if spec.public_n is not None else spec.size
    if size is None and spec.loader == "synthetic":
        size = dataset.n_rows  # rows a synthesizer released: their count is public, like the rows
    if size is not None:
        return size if isinstance(evaluation, RealHeldOut) else dp_plan.public_rows(size, 1 - spec.test_size)
    if public:
        raise UserError(NO_PUBLIC_SIZE)
    if isinstance(evaluation, RealHeldOut):
        return dataset.n_rows
    return int((~held_out(dataset.frame, seed=s.seed, test_size=spec.test_size)).sum())


def void_reasons(s, dataset: Dataset, resume: dict | None) -> tuple[str, ...]:
    """Why a DP-SGD run would still guarantee nothing: each makes its ε infinite and its charge non-private."""
    from privtrain.privacy.events import is_non_private, loads
    from privtrain.privacy.randomness import VOID_NOTE

    out = []
    if s.reproducible_noise:
        out.append(VOID_NOTE)
    if dataset.schema.inferred:
        out.append(
            "dataset.infer_schema=true: the preprocessing bounds and categories were read off the private rows "
            "without noise, so the guarantee is void (epsilon = infinity); declare dataset.schema instead"
        )
    if resume is not None and is_non_private(loads(resume["meta"]["events"])):
        out.append(
            "resumed from a checkpoint trained without DP: the model already depends on the rows without "
            "noise, so the guarantee is void (epsilon = infinity)"
        )
    return tuple(out)


def plan_dp(privacy, settings: TrainSettings, n_train: int, resume: dict | None):
    """(dp plan or None, planned events, delta, planned epsilon of this run's new steps)."""
    if not privacy.private:
        dp_plan.batches_per_epoch(n_train, settings.batch_size)
        delta = dp_plan.resolve_delta(privacy.delta, n_train)
        return None, [non_private_event()], delta, math.inf
    assert settings.epochs is not None  # resolved from the public rows by TrainSettings.for_rows
    target, sigma = privacy.target_epsilon, privacy.noise_multiplier
    if resume is not None and sigma is None and resume["meta"]["noise_multiplier"] is not None:
        target, sigma = None, resume["meta"]["noise_multiplier"]  # continue with the checkpoint's noise
    dp = dp_plan.plan(
        n_train=n_train,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        target_epsilon=target,
        noise_multiplier=sigma,
        delta=privacy.delta,
        max_grad_norm=privacy.max_grad_norm,
        accountant=str(privacy.accountant),
    )
    return dp, list(dp.events), dp.delta, dp.epsilon


def splits(dataset: Dataset, evaluation: RealHeldOut | str | None, *, seed: int, test_size: float) -> Splits:
    """The training and evaluation rows: the keyed split, or all synthetic rows and the parent's real held-out."""
    from privtrain import data

    if isinstance(evaluation, RealHeldOut):
        y = dataset.schema.encode_target(dataset.frame[dataset.target])
        return data.Splits(
            dataset.schema.transform(dataset.frame), y, evaluation.x, evaluation.y, dataset.schema.classes
        )
    return data.split(dataset, seed=seed, test_size=test_size)


# --- after training ----------------------------------------------------------------------------------


def fixed_note(dp: DpSgdPlan | None, train: TrainSettings, public_rows: int | None) -> str:
    """What fixed the mechanism: public values only (the add/remove adjacency needs one mechanism)."""
    if dp is None:
        return ""
    return (
        f"add/remove-one-example adjacency: sampling rate {dp.sample_rate:.4g} = batch {train.batch_size} / "
        f"{public_rows} public training rows, divisor {train.batch_size} and {dp.steps} steps, all fixed "
        "from public values before any row was read (never from the rows' count)"
    )


def guarantee(
    dp: DpSgdPlan | None,
    outcome: TrainOutcome,
    resume: dict | None,
    run_events: tuple[DpEvent, ...],
    delta: float,
    dataset: Dataset,
    void: tuple[str, ...],
    fixed: str = "",
) -> Guarantee:
    """The run's own guarantee on its training rows (after a resume: every step since the first)."""
    from privtrain.privacy.events import epsilon_pld, loads

    notes = list(dataset.schema.notes) + list(void)
    if dp is None or void:
        return Guarantee(math.inf, delta, "example", "none", tuple(run_events), tuple(notes))
    if fixed:
        notes.append(fixed)
    events: tuple[DpEvent, ...] = run_events
    if resume is not None:
        events = tuple(loads(resume["meta"]["events"])) + run_events
        notes.append(f"resumed from a checkpoint after {resume['meta']['steps']} steps; epsilon covers all steps")
    assert outcome.epsilon is not None  # DP training always reports its accountant's epsilon
    epsilon, accountant = float(outcome.epsilon), dp.accountant
    if dp.accountant == "gdp":  # an approximation that can underestimate: the headline is the PLD upper bound
        epsilon, accountant = max(epsilon, epsilon_pld(list(events), delta)), "pld"
        notes.append(f"{dp_plan.GDP_NOTE}; it reported epsilon={float(outcome.epsilon):.4g}")
    return Guarantee(epsilon, delta, "example", accountant, events, tuple(notes))


def inherited_guarantee(lineage: Lineage) -> Guarantee:
    """The guarantee, toward the real rows of the parent source, of anything trained on derived data."""
    note = (
        f"trained on data derived from source {lineage.parent_name or lineage.parent} by run {lineage.run_id}; "
        "toward the parent's real rows, this model inherits the synthesizer's guarantee"
    )
    return Guarantee(lineage.epsilon, lineage.delta, lineage.unit, "lineage", tuple(lineage.events), (note,))


def evaluated_on(evaluation: RealHeldOut | str | None) -> str:
    """What the held-out metrics were computed on, in words."""
    if isinstance(evaluation, RealHeldOut):
        return evaluation.description
    if isinstance(evaluation, str):  # synthetic rows whose parent cannot be reached: say what the score means
        return f"held-out synthetic rows, not real ones: {evaluation}"
    return "the held-out split (the evaluator's data, not covered by the guarantee)"


def clipping_mode(train: TrainSettings, chosen: ClippingMode | None) -> dict:
    """The per-sample-gradient mode that ran and why (run.json, metrics.json and the card)."""
    return {
        "grad_sample_mode": train.grad_sample_mode,
        "grad_sample_mode_reason": chosen.reason if chosen is not None else "as configured",
    }


def dp_info(
    dp: DpSgdPlan | None, train: TrainSettings, steps: int, public_rows: int | None, chosen: ClippingMode | None
) -> dict | None:
    """The mechanism as run.json and metrics.json record it (None without DP)."""
    if dp is None:
        return None
    return {
        "noise_multiplier": dp.noise_multiplier,
        "sample_rate": dp.sample_rate,
        "steps": steps,
        "max_grad_norm": dp.max_grad_norm,
        "accountant": dp.accountant,
        "delta": dp.delta,
        "expected_batch_size": train.batch_size,
        "public_training_rows": public_rows,
        **clipping_mode(train, chosen),
    }


def mechanism(dp: DpSgdPlan | None, train: TrainSettings, steps: int, chosen: ClippingMode | None) -> dict:
    """What the card says DP-SGD did: the values the run used."""
    if dp is None:
        return {"kind": "none", "what": "the model"}
    return {
        "kind": "dp_sgd",
        "max_grad_norm": dp.max_grad_norm,
        "noise_multiplier": dp.noise_multiplier,
        "sample_rate": dp.sample_rate,
        "batch_size": train.batch_size,  # the expected batch and the divisor
        "steps": steps,
        "epochs": train.epochs,
        "lr": train.lr,
        "optimizer": train.optimizer,
        "accountant": dp.accountant,
        "delta": dp.delta,
        **clipping_mode(train, chosen),
    }


def checkpoint_state(
    s,
    outcome: TrainOutcome,
    dp: DpSgdPlan | None,
    own: Guarantee,
    dataset: Dataset,
    prior_steps: int,
    ledger_stamp: dict,
) -> dict:
    """``checkpoint.pt``: the weights, optimizer and accountant state, and what a resume checks (``meta``)."""
    from privtrain.privacy.events import dumps

    return {
        "model": outcome.model.state_dict(),
        "optimizer": outcome.optimizer_state,
        "accountant": outcome.accountant_state,
        "meta": {
            "fingerprint": dataset.fingerprint,
            "steps": prior_steps + outcome.steps,
            "noise_multiplier": dp.noise_multiplier if dp else None,
            "sample_rate": dp.sample_rate if dp else None,
            "events": dumps(own.events),
            "delta": own.delta,
            "epsilon": str(own.epsilon),
            "model": s.model.to_dict(),
            "config_hash": s.config_hash,
            "schema": dataset.schema.to_dict(),
            "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
            "ledger": ledger_stamp,
        },  # a resume continues there
    }


def held_out_frame(
    dataset: Dataset, evaluation: RealHeldOut | str | None, *, wanted: bool, seed: int, test_size: float
) -> pd.DataFrame | None:
    """The held-out rows as a table, aligned with the split's ``x_test``, for per-group accuracy (``wanted``: the
    run declares sensitive attributes). None when not wanted, or for synthetic rows scored on real ones."""
    if isinstance(evaluation, RealHeldOut) or not wanted:
        return None
    frame = dataset.frame
    return frame[held_out(frame, seed=seed, test_size=test_size)]
