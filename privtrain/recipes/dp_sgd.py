"""Recipe ``dp_sgd``: differentially-private training with Opacus, or its non-private baseline.

Features and the keys that turn them on:

- noise calibrated to a target:      ``privacy.target_epsilon=3`` (or fix ``privacy.noise_multiplier``)
- delta:                             ``privacy.delta`` (default well below 1/n; >= 1/n is refused)
- accountant:                        ``privacy.accountant=prv|rdp|gdp``
- clipping:                          ``privacy.max_grad_norm``, ``recipe.clipping=flat|per_layer``
- per-sample gradients:              ``recipe.grad_sample_mode=auto|hooks|ghost|functorch`` (auto: ghost clipping
                                     when every layer supports it, :mod:`privtrain.privacy.clipping_mode`)
- logical vs physical batch:         ``recipe.batch_size``, ``recipe.max_physical_batch_size``
- non-private baseline:              ``privacy=none`` (needs ``ledger.allow_non_private=true`` on a budgeted source)
- resume:                            ``resume=outputs/.../checkpoint.pt`` (epsilon keeps accumulating)
- dry run:                           ``--dry-run`` / ``ledger.plan_only=true``
- DP reference stats for monitoring: ``monitor.reference=true`` (``monitor.epsilon``, ``monitor.bins``; charged)
- fairness in the card:              ``dataset.sensitive=[sex,age_band]`` (:mod:`privtrain.monitoring.fairness`)

:func:`plan` loads and identifies the table and plans the mechanism from the config; the API has the
ledger reserve it; :func:`train` then splits, trains, evaluates and writes the artifacts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from privtrain import data, distributed, models
from privtrain.artifacts import run_files
from privtrain.data.synthetic import RealHeldOut, real_held_out
from privtrain.ledger import Access, Mechanism
from privtrain.monitoring import run_hooks
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.clipping_mode import ClippingMode
from privtrain.privacy.clipping_mode import choose as choose_clipping_mode
from privtrain.privacy.events import dp_sgd_event, non_private_event
from privtrain.result import Outcome, Reserved, RunResult
from privtrain.runs import dp_sgd as parts
from privtrain.runs import dp_sgd_files as files_of
from privtrain.runs import resume as resuming

if TYPE_CHECKING:
    from privtrain.config import RunSettings
    from privtrain.training import TrainSettings


@dataclass(frozen=True)
class Planned:
    settings: RunSettings
    dataset: data.Dataset
    train: TrainSettings
    dp: dp_plan.DpSgdPlan | None
    resume: dict | None
    access: Access
    dataset_info: dict
    void: tuple[str, ...] = ()  # why the guarantee is void (ε = ∞) although the training may be DP-SGD
    evaluation: RealHeldOut | str | None = None  # synthetic rows: the parent's real held-out rows, or why not
    public_rows: int | None = None  # DP: the public training rows that fixed the sampling rate and steps
    clipping_mode: ClippingMode | None = None  # DP: the per-sample-gradient mode that runs, and why
    monitoring: run_hooks.Planned = field(default_factory=run_hooks.Planned)  # reference statistics, fairness


def plan(s: RunSettings) -> Planned:
    """Load and identify the table, check every setting, and plan the mechanism. Reads no row for training."""
    assert s.model and s.train and s.privacy  # dp_sgd's groups: config.settings always sets them
    parts.check_settings(s)  # a bad setting (or a GPU that is not there) fails before anything is read or charged
    dataset = data.load(s.dataset)
    dataset.schema.encode_target(dataset.frame[dataset.target])  # a label outside the schema fails before any charge
    # Synthetic rows train whole and are scored on their parent's real held-out rows, when those are reachable.
    evaluation = (
        real_held_out(str(s.dataset.path), dataset.schema, dataset.target) if s.dataset.loader == "synthetic" else None
    )
    train = s.train
    built = models.build(
        s.model,
        n_inputs=dataset.schema.n_inputs,
        n_classes=len(dataset.schema.classes),
        image_shape=dataset.image_shape,
    )  # a model that cannot be built fails before any charge
    clipping_mode = None
    if s.privacy.private:
        models.validate_for_dp(built)  # ... and so does one Opacus cannot train privately
        clipping_mode = choose_clipping_mode(train.grad_sample_mode, built, clipping=train.clipping, amp=train.amp)
        train = replace(train, grad_sample_mode=clipping_mode.mode)
    resume = resuming.load(s.resume, dataset.fingerprint, s.model, s.ledger.path)
    void = parts.void_reasons(s, dataset, resume) if s.privacy.private else ()
    # Public under DP: it fixes the sampling rate, steps and delta (a void guarantee needs no public size).
    n_train = parts.training_rows(s, dataset, evaluation, public=s.privacy.private and not void)
    train = train.for_rows(n_train)
    dp, events, delta, epsilon = parts.plan_dp(s.privacy, train, n_train, resume)
    monitoring = run_hooks.plan(s, dataset, delta)
    if monitoring.reference is not None:  # the histograms' event joins the one example-level charge
        events, epsilon = monitoring.reference.compose(tuple(events), epsilon)
    if void:  # the training may still be DP-SGD (to debug it), but nothing is guaranteed: charge it as such
        events, epsilon = [non_private_event()], math.inf
    mechanism = Mechanism("example", tuple(events), delta, epsilon)
    access = Access(dataset.source, dataset.fingerprint, (mechanism,), dataset.identity_table, dataset.id_column)
    public_rows = n_train if dp else None
    info = files_of.dataset_info(dataset)
    return Planned(
        s, dataset, train, dp, resume, access, info, void, evaluation, public_rows, clipping_mode, monitoring
    )


def train(p: Planned, reserved: Reserved, output_dir: Path) -> Outcome | None:
    """Split, train, evaluate and write the artifacts; the budget is already reserved."""
    from privtrain import training

    s, dataset, dp = p.settings, p.dataset, p.dp
    assert s.model is not None  # dp_sgd's group: config.settings always sets it
    splits = _splits(p)
    models.seed_everything(s.seed)  # initialisation is public randomness: it follows `seed`
    model = models.build(
        s.model, n_inputs=splits.x_train.shape[1], n_classes=len(splits.classes), image_shape=dataset.image_shape
    )
    if p.resume is not None:
        model.load_state_dict(p.resume["model"])
    if dp is not None:
        models.validate_for_dp(model)
    replay = s.seed if s.reproducible_noise else None  # debugging only: the guarantee is void
    outcome = training.train(
        model,
        splits.x_train,
        splits.y_train,
        p.train,
        dp=dp,
        seed=s.seed,
        resume=p.resume,
        desc=f"dp_sgd {dataset.name}",
        device=s.device,
        report_epsilon=distributed.is_main(),
        reproducible_noise_from=replay,
    )
    if not distributed.is_main():
        return None  # another torchrun rank: it trained its share; rank 0 evaluates, writes and commits
    metrics = training.evaluate(outcome.model, splits.x_test, splits.y_test, len(splits.classes))
    run_events = (
        (dp_sgd_event(sample_rate=dp.sample_rate, noise_multiplier=dp.noise_multiplier, steps=outcome.steps),)
        if dp and not p.void
        else (non_private_event(),)
    )
    delta = p.access.mechanisms[0].delta
    guarantees = [
        parts.guarantee(
            dp, outcome, p.resume, run_events, delta, dataset, p.void, parts.fixed_note(dp, p.train, p.public_rows)
        )
    ]
    if reserved.lineage is not None:
        guarantees.insert(0, parts.inherited_guarantee(reserved.lineage))
    info = files_of.run_info(p.dataset_info, reserved, splits, dataset, p.evaluation)
    ledger_info = reserved.summary()
    metrics["steps"] = outcome.steps  # no training loss: a non-DP statistic of the training rows
    # The entry records this run's own ε for the steps it charged: after a resume, the guarantee covers all
    # steps but the new entry only the new ones (the reservation's ε when the steps went as planned).
    own = None if dp is None or p.void or p.resume is not None else {"example": guarantees[-1].epsilon}
    held = parts.held_out_frame(
        dataset, p.evaluation, wanted=bool(p.monitoring.sensitive), seed=s.seed, test_size=s.dataset.test_size
    )
    extra = run_hooks.finish(
        p.monitoring, s, splits, held, outcome.model, Path(output_dir), run_events, own, delta
    )  # DP reference statistics and per-group accuracy
    written = files_of.run_files_of(p, reserved, outcome, info, guarantees, metrics, ledger_info, extra.metrics)
    files = run_files.write(Path(output_dir), written)
    extra.add_to_card(Path(output_dir) / "model_card.md")
    result = RunResult("dp_sgd", Path(output_dir), metrics, guarantees, info, ledger_info)
    return Outcome(result, {"example": extra.events}, files + extra.files, epsilon=extra.own)


def _splits(p: Planned) -> data.Splits:
    """The training and evaluation rows: the keyed split, or all synthetic rows and the parent's real held-out."""
    return parts.splits(p.dataset, p.evaluation, seed=p.settings.seed, test_size=p.settings.dataset.test_size)
