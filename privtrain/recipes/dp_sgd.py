"""Recipe ``dp_sgd``: differentially-private training with Opacus, or its non-private baseline.

Features and the keys that turn them on:

- noise calibrated to a target:      ``privacy.target_epsilon=3`` (or fix ``privacy.noise_multiplier``)
- delta:                             ``privacy.delta`` (default well below 1/n; >= 1/n is refused)
- accountant:                        ``privacy.accountant=prv|rdp|gdp``
- clipping:                          ``privacy.max_grad_norm``, ``recipe.clipping=flat|per_layer``
- per-sample gradients:              ``recipe.grad_sample_mode=hooks|ghost|functorch``
- logical vs physical batch:         ``recipe.batch_size``, ``recipe.max_physical_batch_size``
- non-private baseline:              ``privacy=none`` (needs ``ledger.allow_non_private=true`` on a budgeted dataset)
- resume:                            ``resume=outputs/.../checkpoint.pt`` (epsilon keeps accumulating)
- dry run:                           ``--dry-run`` / ``ledger.plan_only=true``

Order: load + fingerprint -> plan -> ledger reservation -> split, train, evaluate
-> artifacts -> ledger commit. Nothing reads the training rows before the
reservation.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from pathlib import Path

from privtrain import config, data, ledger, models
from privtrain.artifacts import model_card
from privtrain.artifacts.run_dir import hash_artifacts, write_config, write_json
from privtrain.errors import UserError
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.events import DpEvent, dp_sgd_event, non_private_event
from privtrain.result import Guarantee, RunResult

INTENDED_USE = (
    "A classifier trained with privtrain's `dp_sgd` recipe. Intended for research, benchmarking and "
    "as a template for private training. Check the guarantee below before releasing the model."
)


def run(cfg, output_dir: Path) -> RunResult:
    output_dir = Path(output_dir)
    dataset = data.load(config.dataset_spec(cfg.dataset))
    test_size = float(cfg.dataset.test_size)
    n_train = dataset.n_rows - math.ceil(test_size * dataset.n_rows)
    settings = config.train_settings(cfg.recipe, n_train)
    resume = _load_resume(cfg.resume, dataset.fingerprint)
    if cfg.privacy.name not in ("dp", "none"):
        raise UserError(f"privacy={cfg.privacy.name} is for the federated recipe; dp_sgd takes privacy=dp or privacy=none.")
    private = cfg.privacy.name != "none"
    dp, events, delta, epsilon = _plan(cfg.privacy, settings, n_train, resume, private)
    unit = str(cfg.privacy.unit)
    run_id = f"{cfg.recipe.name}-{secrets.token_hex(6)}"
    charge = ledger.Charge(
        run_id=run_id, recipe=str(cfg.recipe.name), dataset_fingerprint=dataset.fingerprint,
        dataset_name=dataset.name, unit=unit, events=tuple(events), delta=delta, epsilon=epsilon,
        config_hash=config.config_hash(cfg), allow_non_private=bool(cfg.ledger.allow_non_private),
        default_budget=config.default_budget(cfg.ledger.default_budget),
    )
    from privtrain.audit import preflight as audit_preflight

    audit_preflight(cfg.audit)  # a bad audit setting fails now, not after training
    book = ledger.open(cfg.ledger.path)
    lineage = book.lineage(dataset.fingerprint)  # synthetic data: training on it is post-processing
    if lineage is not None:
        charge = dataclasses.replace(charge, parent_fingerprint=lineage.parent_fingerprint)
    dataset_info = {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_rows": dataset.n_rows}
    if cfg.ledger.plan_only:
        plan = book.plan(charge)
        return RunResult("dp_sgd", output_dir, {}, [], dataset_info, {"plan": plan.render()}, dry_run=True)

    with book.charging(charge) as entry:
        # Only now, with the budget reserved, are the rows read for training.
        splits = data.split(dataset, seed=int(cfg.seed), test_size=test_size)
        model = models.build(config.model_spec(cfg.model), n_inputs=splits.x_train.shape[1],
                             n_classes=len(splits.classes), image_shape=dataset.image_shape)
        if resume is not None:
            model.load_state_dict(resume["model"])
        if private:
            models.validate_for_dp(model)
        from privtrain import training

        outcome = training.train(model, splits.x_train, splits.y_train, settings, dp=dp,
                                 seed=int(cfg.seed), resume=resume, desc=f"dp_sgd {dataset.name}")
        metrics = training.evaluate(outcome.model, splits.x_test, splits.y_test, len(splits.classes))
        run_events = (dp_sgd_event(sample_rate=dp.sample_rate, noise_multiplier=dp.noise_multiplier,
                                   steps=outcome.steps),) if private else (non_private_event(),)
        guarantees = [_guarantee(dp, outcome, resume, run_events, delta, unit, dataset)]
        if lineage is not None:
            guarantees.insert(0, inherited_guarantee(lineage))
        dataset_info.update(n_train=splits.n_train, n_test=len(splits.y_test), schema=dataset.schema.source)
        ledger_info = ledger_summary(book, entry, unit)
        metrics.update(steps=outcome.steps, final_train_loss=outcome.losses[-1] if outcome.losses else None)
        files = _write_artifacts(output_dir, cfg, dataset_info, guarantees, metrics, outcome, dp, dataset,
                                 ledger_info, config.model_spec(cfg.model), resume, lineage)
        entry.commit(run_events, artifacts=hash_artifacts(files, output_dir), epsilon=epsilon)
    result = RunResult("dp_sgd", output_dir, metrics, guarantees, dataset_info, ledger_info)
    if cfg.audit.enabled:
        from privtrain.audit import audit_run

        result.metrics["audit"] = audit_run(output_dir)
    return result


def ledger_summary(book, entry, unit: str) -> dict:
    """What metrics.json and the model card cite: the entry and the budget left after this run."""
    plan = entry.plan
    remaining = None if plan.budget is None else max(0.0, plan.budget.epsilon - plan.after)
    return {"path": str(book.path), "entry": entry.run_id, "unit": unit, "spent_after_run": plan.after,
            "remaining": remaining, "budget": None if plan.budget is None else
            {"epsilon": plan.budget.epsilon, "delta": plan.budget.delta}}


def _plan(privacy, settings, n_train: int, resume: dict | None, private: bool):
    """(dp plan or None, planned events, delta, planned epsilon of this run's new steps)."""
    if not private:
        dp_plan.batches_per_epoch(n_train, settings.batch_size)
        delta = dp_plan.resolve_delta(privacy.delta, n_train)
        return None, [non_private_event()], delta, math.inf
    target, sigma = privacy.target_epsilon, privacy.noise_multiplier
    if resume is not None and sigma is None:  # continue with the checkpoint's noise: epsilon accumulates
        target, sigma = None, resume["meta"]["noise_multiplier"]
    dp = dp_plan.plan(
        n_train=n_train, batch_size=settings.batch_size, epochs=settings.epochs,
        target_epsilon=None if target is None else float(target),
        noise_multiplier=None if sigma is None else float(sigma),
        delta=privacy.delta, max_grad_norm=privacy.max_grad_norm, accountant=str(privacy.accountant),
    )
    if settings.grad_sample_mode not in dp_plan.GRAD_SAMPLE_MODES:
        raise UserError(f"recipe.grad_sample_mode={settings.grad_sample_mode!r} is unknown; choose one of "
                        f"{', '.join(dp_plan.GRAD_SAMPLE_MODES)}.")
    if settings.clipping not in dp_plan.CLIPPING:
        raise UserError(f"recipe.clipping={settings.clipping!r} is unknown; choose one of {', '.join(dp_plan.CLIPPING)}.")
    return dp, list(dp.events), dp.delta, dp.epsilon


def _guarantee(dp, outcome, resume, run_events, delta, unit, dataset) -> Guarantee:
    notes = list(dataset.schema.notes)
    if dp is not None and dp.accountant == "gdp":
        notes.append(dp_plan.GDP_NOTE)
    if dp is None:
        return Guarantee(math.inf, delta, unit, "none", tuple(run_events), tuple(notes))
    events: tuple[DpEvent, ...] = run_events
    if resume is not None:
        from privtrain.privacy.events import loads

        events = tuple(loads(resume["meta"]["events"])) + run_events
        notes.append(f"resumed from a checkpoint after {resume['meta']['steps']} steps; epsilon covers all steps")
    return Guarantee(float(outcome.epsilon), delta, unit, dp.accountant, events, tuple(notes))


def inherited_guarantee(lineage) -> Guarantee:
    """The guarantee, toward the real rows of the parent dataset, of anything trained on derived data."""
    note = (f"trained on data derived from {lineage.parent_name} ({lineage.parent_fingerprint[:12]}) by run "
            f"{lineage.run_id}; toward the parent's real rows, this model inherits the synthesizer's guarantee")
    return Guarantee(lineage.epsilon, lineage.delta, lineage.unit, "lineage", tuple(lineage.events), (note,))


def _load_resume(path, fingerprint: str) -> dict | None:
    if not path:
        return None
    import torch

    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise UserError(f"resume: no checkpoint at {str(file)!r}; pass the checkpoint.pt of an earlier run.")
    ckpt = torch.load(file, map_location="cpu", weights_only=False)
    if ckpt.get("meta", {}).get("fingerprint") != fingerprint:
        raise UserError(f"resume: {file} was trained on a different dataset; resume with the same dataset.* settings.")
    return ckpt


def _write_artifacts(out: Path, cfg, dataset_info, guarantees, metrics, outcome, dp, dataset, ledger_info,
                     model_spec, resume, lineage) -> list[Path]:
    import torch

    from privtrain.models import count_parameters
    from privtrain.privacy.events import dumps

    out.mkdir(parents=True, exist_ok=True)
    prior_steps = resume["meta"]["steps"] if resume else 0
    guarantee = guarantees[-1]  # this training run's own guarantee
    ckpt = out / "checkpoint.pt"
    torch.save({
        "model": outcome.model.state_dict(), "optimizer": outcome.optimizer_state, "accountant": outcome.accountant_state,
        "meta": {"fingerprint": dataset.fingerprint, "steps": prior_steps + outcome.steps,
                 "noise_multiplier": dp.noise_multiplier if dp else None, "sample_rate": dp.sample_rate if dp else None,
                 "events": dumps(guarantee.events), "delta": guarantee.delta},
    }, ckpt)
    files = [write_config(out / "config.yaml", cfg), ckpt]
    files.append(write_json(out / "metrics.json", {
        "recipe": "dp_sgd", "metrics": metrics, "guarantee": guarantees[0].to_dict(),
        "guarantees": [g.to_dict() for g in guarantees], "dataset": dataset_info,
        "ledger": ledger_info,
        "dp": {"noise_multiplier": dp.noise_multiplier, "sample_rate": dp.sample_rate, "steps": outcome.steps,
               "max_grad_norm": dp.max_grad_norm} if dp else None,
    }))
    card = model_card.render(
        recipe="dp_sgd", intended_use=INTENDED_USE, dataset=dataset_info, guarantees=guarantees, metrics=metrics,
        lineage=lineage.describe() if lineage else None,
        model=f"`{model_spec.name}` ({count_parameters(outcome.model)} parameters); weights are the EMA of the DP iterates"
        if dp else f"`{model_spec.name}` ({count_parameters(outcome.model)} parameters), trained without DP",
        ledger=ledger_info,
    )
    files.append(model_card.write(out / "model_card.md", card))
    return files
