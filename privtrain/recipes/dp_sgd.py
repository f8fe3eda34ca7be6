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

from privtrain import data, devices, distributed, models
from privtrain.artifacts import model_card
from privtrain.data.assign import held_out
from privtrain.data.synthetic import RealHeldOut, real_held_out
from privtrain.artifacts.record import RunRecord
from privtrain.artifacts.run_dir import write_json, write_text
from privtrain.errors import UserError
from privtrain.ledger import Access, Mechanism
from privtrain.monitoring import run_hooks
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.clipping_mode import ClippingMode
from privtrain.privacy.clipping_mode import choose as choose_clipping_mode
from privtrain.privacy.events import DpEvent, dp_sgd_event, non_private_event
from privtrain.result import Guarantee, Outcome, RunResult

INTENDED_USE = (
    "A classifier trained with privtrain's `dp_sgd` recipe. Intended for research, benchmarking and "
    "as a template for private training. Check the guarantee below before releasing the model."
)


@dataclass(frozen=True)
class Planned:
    settings: object  # privtrain.config.RunSettings
    dataset: data.Dataset
    train: object  # privtrain.training.TrainSettings
    dp: dp_plan.DpSgdPlan | None
    resume: dict | None
    access: Access
    dataset_info: dict
    void: tuple[str, ...] = ()  # why the guarantee is void (ε = ∞) although the training may be DP-SGD
    evaluation: "RealHeldOut | str | None" = None  # synthetic rows: the parent's real held-out rows, or why not
    public_rows: int | None = None  # DP: the public training rows that fixed the sampling rate and steps
    clipping_mode: ClippingMode | None = None  # DP: the per-sample-gradient mode that runs, and why
    monitoring: run_hooks.Planned = field(default_factory=run_hooks.Planned)  # reference statistics (charged) and fairness


def plan(s) -> Planned:
    """Load and identify the table, check every setting, and plan the mechanism. Reads no row for training."""
    if s.privacy.name not in ("dp", "none"):
        raise UserError(f"privacy={s.privacy.name} is for the federated recipe; dp_sgd takes privacy=dp or privacy=none.")
    device = devices.resolve(s.device)  # a GPU that is not there fails before anything is read or charged
    if s.train.amp:
        devices.check_amp(device)
    dataset = data.load(s.dataset)
    dataset.schema.encode_target(dataset.frame[dataset.target])  # a label outside the schema fails before any charge
    # Synthetic rows train whole and are scored on their parent's real held-out rows, when those are reachable.
    evaluation = real_held_out(s.dataset.path, dataset.schema, dataset.target) if s.dataset.loader == "synthetic" \
        else None
    train = s.train
    if train.grad_sample_mode not in dp_plan.GRAD_SAMPLE_MODES:
        raise UserError(f"recipe.grad_sample_mode={train.grad_sample_mode!r} is unknown; choose one of "
                        f"{', '.join(dp_plan.GRAD_SAMPLE_MODES)}.")
    if train.clipping not in dp_plan.CLIPPING:
        raise UserError(f"recipe.clipping={train.clipping!r} is unknown; choose one of {', '.join(dp_plan.CLIPPING)}.")
    if train.grad_sample_mode == "ghost" and train.clipping == "per_layer":  # auto picks hooks there instead
        raise UserError("recipe.grad_sample_mode=ghost supports recipe.clipping=flat only (Opacus' ghost clipping "
                        "computes one norm per example); use recipe.clipping=flat, or grad_sample_mode=hooks.")
    if train.amp and train.grad_sample_mode == "ghost" and s.privacy.private:
        raise UserError(dp_plan.AMP_GHOST)
    built = models.build(s.model, n_inputs=dataset.schema.n_inputs, n_classes=len(dataset.schema.classes),
                         image_shape=dataset.image_shape)  # a model that cannot be built fails before any charge
    clipping_mode = None
    if s.privacy.private:
        models.validate_for_dp(built)  # ... and so does one Opacus cannot train privately
        clipping_mode = choose_clipping_mode(train.grad_sample_mode, built, clipping=train.clipping, amp=train.amp)
        train = replace(train, grad_sample_mode=clipping_mode.mode)
    resume = _load_resume(s.resume, dataset.fingerprint, s.model, s.ledger.path)
    void = _void_reasons(s, dataset, resume) if s.privacy.private else ()
    # Public under DP: it fixes the sampling rate, steps and delta (a void guarantee needs no public size).
    n_train = _training_rows(s, dataset, evaluation, public=s.privacy.private and not void)
    train = train.for_rows(n_train)
    dp, events, delta, epsilon = _plan_dp(s.privacy, train, n_train, resume)
    monitoring = run_hooks.plan(s, dataset, delta)
    if monitoring.reference is not None:  # the histograms' event joins the one example-level charge
        events, epsilon = monitoring.reference.compose(tuple(events), epsilon)
    if void:  # the training may still be DP-SGD (to debug it), but nothing is guaranteed: charge it as such
        events, epsilon = [non_private_event()], math.inf
    access = Access(
        source=dataset.source, fingerprint=dataset.fingerprint, mechanisms=(Mechanism("example", tuple(events), delta, epsilon),),
        table=dataset.identity_table, id_column=dataset.id_column)
    info = {"name": dataset.name, "source": dataset.source.key, "fingerprint": dataset.fingerprint,
            "n_rows": dataset.n_rows, "pii": dataset.pii}
    return Planned(s, dataset, train, dp, resume, access, info, void, evaluation, n_train if dp else None, clipping_mode,
                   monitoring)


NO_PUBLIC_SIZE = ("dataset.public_n is not set: DP-SGD fixes its sampling rate, steps and delta from a public row count, "
                  "never from the rows it reads (one row more or less would otherwise run another mechanism); declare "
                  "the table's approximate size, known without reading it, e.g. dataset.public_n=3000 (docs/privacy.md).")


def _training_rows(s, dataset, evaluation, *, public: bool) -> int:
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


def _void_reasons(s, dataset, resume) -> tuple[str, ...]:
    """Why a DP-SGD run would still guarantee nothing: each makes its ε infinite and its charge non-private."""
    from privtrain.privacy.events import is_non_private, loads
    from privtrain.privacy.randomness import VOID_NOTE

    out = []
    if s.reproducible_noise:
        out.append(VOID_NOTE)
    if dataset.schema.inferred:
        out.append("dataset.infer_schema=true: the preprocessing bounds and categories were read off the private rows "
                   "without noise, so the guarantee is void (epsilon = infinity); declare dataset.schema instead")
    if resume is not None and is_non_private(loads(resume["meta"]["events"])):
        out.append("resumed from a checkpoint trained without DP: the model already depends on the rows without "
                   "noise, so the guarantee is void (epsilon = infinity)")
    return tuple(out)


def train(p: Planned, reserved, output_dir: Path) -> Outcome | None:
    """Split, train, evaluate and write the artifacts; the budget is already reserved."""
    from privtrain import training

    s, dataset, dp = p.settings, p.dataset, p.dp
    splits = _splits(p)
    models.seed_everything(s.seed)  # initialisation is public randomness: it follows `seed`
    model = models.build(s.model, n_inputs=splits.x_train.shape[1], n_classes=len(splits.classes),
                         image_shape=dataset.image_shape)
    if p.resume is not None:
        model.load_state_dict(p.resume["model"])
    if dp is not None:
        models.validate_for_dp(model)
    outcome = training.train(model, splits.x_train, splits.y_train, p.train, dp=dp, seed=s.seed, resume=p.resume,
                             desc=f"dp_sgd {dataset.name}", device=s.device, report_epsilon=distributed.is_main(),
                             reproducible_noise_from=s.seed if s.reproducible_noise else None)
    if not distributed.is_main():
        return None  # another torchrun rank: it trained its share; rank 0 evaluates, writes and commits
    metrics = training.evaluate(outcome.model, splits.x_test, splits.y_test, len(splits.classes))
    run_events = (dp_sgd_event(sample_rate=dp.sample_rate, noise_multiplier=dp.noise_multiplier,
                               steps=outcome.steps),) if dp and not p.void else (non_private_event(),)
    delta = p.access.mechanisms[0].delta
    guarantees = [_guarantee(dp, outcome, p.resume, run_events, delta, dataset, p.void, _fixed_note(p))]
    if reserved.lineage is not None:
        guarantees.insert(0, inherited_guarantee(reserved.lineage))
    info = dict(p.dataset_info, name=reserved.source_name, source=reserved.source, n_train=splits.n_train,
                n_test=len(splits.y_test), schema=dataset.schema.source, evaluated_on=_evaluated_on(p))
    ledger_info = reserved.summary()
    metrics["steps"] = outcome.steps  # no training loss: a non-DP statistic of the training rows
    # The entry records this run's own ε for the steps it charged: after a resume, the guarantee covers all
    # steps but the new entry only the new ones (the reservation's ε when the steps went as planned).
    own = None if dp is None or p.void or p.resume is not None else {"example": guarantees[-1].epsilon}
    extra = run_hooks.finish(p.monitoring, s, splits, _held_out_frame(p), outcome.model, Path(output_dir), run_events,
                             own, delta)
    files = _write_artifacts(Path(output_dir), p, reserved, info, guarantees, metrics, outcome, ledger_info, extra)
    result = RunResult("dp_sgd", Path(output_dir), metrics, guarantees, info, ledger_info)
    return Outcome(result, {"example": extra.events}, files + extra.files, epsilon=extra.own)


def _held_out_frame(p: Planned):
    """The held-out rows as a table, aligned with the split's x_test (None: synthetic rows scored on real ones)."""
    if isinstance(p.evaluation, RealHeldOut) or not p.monitoring.sensitive:
        return None
    frame = p.dataset.frame
    return frame[held_out(frame, seed=p.settings.seed, test_size=p.settings.dataset.test_size)]


def _evaluated_on(p: Planned) -> str:
    if isinstance(p.evaluation, RealHeldOut):
        return p.evaluation.description
    if isinstance(p.evaluation, str):  # synthetic rows whose parent cannot be reached: say what the score means
        return f"held-out synthetic rows, not real ones: {p.evaluation}"
    return "the held-out split (the evaluator's data, not covered by the guarantee)"


def _splits(p: Planned) -> data.Splits:
    """The training and evaluation rows: the keyed split, or all synthetic rows and the parent's real held-out."""
    dataset, s = p.dataset, p.settings
    if isinstance(p.evaluation, RealHeldOut):
        y = dataset.schema.encode_target(dataset.frame[dataset.target])
        return data.Splits(dataset.schema.transform(dataset.frame), y, p.evaluation.x, p.evaluation.y,
                           dataset.schema.classes)
    return data.split(dataset, seed=s.seed, test_size=s.dataset.test_size)


def _plan_dp(privacy, settings, n_train: int, resume: dict | None):
    """(dp plan or None, planned events, delta, planned epsilon of this run's new steps)."""
    if not privacy.private:
        dp_plan.batches_per_epoch(n_train, settings.batch_size)
        delta = dp_plan.resolve_delta(privacy.delta, n_train)
        return None, [non_private_event()], delta, math.inf
    target, sigma = privacy.target_epsilon, privacy.noise_multiplier
    if resume is not None and sigma is None and resume["meta"]["noise_multiplier"] is not None:
        target, sigma = None, resume["meta"]["noise_multiplier"]  # continue with the checkpoint's noise
    dp = dp_plan.plan(
        n_train=n_train, batch_size=settings.batch_size, epochs=settings.epochs, target_epsilon=target,
        noise_multiplier=sigma, delta=privacy.delta, max_grad_norm=privacy.max_grad_norm,
        accountant=str(privacy.accountant))
    return dp, list(dp.events), dp.delta, dp.epsilon


def _fixed_note(p: Planned) -> str:
    """What fixed the mechanism: public values only (the add/remove adjacency needs one mechanism)."""
    if p.dp is None:
        return ""
    return (f"add/remove-one-example adjacency: sampling rate {p.dp.sample_rate:.4g} = batch {p.train.batch_size} / "
            f"{p.public_rows} public training rows, divisor {p.train.batch_size} and {p.dp.steps} steps, all fixed "
            "from public values before any row was read (never from the rows' count)")


def _guarantee(dp, outcome, resume, run_events, delta, dataset, void, fixed: str = "") -> Guarantee:
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
    epsilon, accountant = float(outcome.epsilon), dp.accountant
    if dp.accountant == "gdp":  # an approximation that can underestimate: the headline is the PLD upper bound
        epsilon, accountant = max(epsilon, epsilon_pld(list(events), delta)), "pld"
        notes.append(f"{dp_plan.GDP_NOTE}; it reported epsilon={float(outcome.epsilon):.4g}")
    return Guarantee(epsilon, delta, "example", accountant, events, tuple(notes))


def inherited_guarantee(lineage) -> Guarantee:
    """The guarantee, toward the real rows of the parent source, of anything trained on derived data."""
    note = (f"trained on data derived from source {lineage.parent_name or lineage.parent} by run {lineage.run_id}; "
            "toward the parent's real rows, this model inherits the synthesizer's guarantee")
    return Guarantee(lineage.epsilon, lineage.delta, lineage.unit, "lineage", tuple(lineage.events), (note,))


def _load_resume(path, fingerprint: str, model_spec, ledger_path: str | None) -> dict | None:
    """The checkpoint to continue from, checked against this run (and its ledger) before anything is charged."""
    if not path:
        return None
    from privtrain.artifacts import checkpoint_ledger, sealed

    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise UserError(f"resume: no checkpoint at {str(file)!r}; pass the checkpoint.pt of an earlier run.")
    checkpoint_ledger.require_charged_here(file, ledger_path)  # loaded only once its hash matches this ledger
    try:  # weights and plain values only: a crafted pickle cannot run code here
        ckpt = sealed.load_torch(file)  # opened with the run's key when sealed
        meta = ckpt["meta"]
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe file is the user's to fix
        raise UserError(f"resume: {file} is not a privtrain checkpoint that loads safely "
                        f"({type(exc).__name__}); pass the checkpoint.pt of a privtrain run.") from None
    checkpoint_ledger.require_same_ledger(file, meta, ledger_path)
    if meta.get("fingerprint") != fingerprint:
        raise UserError(f"resume: {file} was trained on a different dataset; resume with the same dataset.* settings.")
    if meta.get("model") != model_spec.to_dict():
        raise UserError(f"resume: {file} holds a different model ({meta.get('model')}); resume with the same "
                        "model.* settings.")
    return ckpt


def _write_artifacts(out: Path, p: Planned, reserved, info, guarantees, metrics, outcome, ledger_info,
                     extra: run_hooks.Finished) -> list[Path]:
    from privtrain.artifacts import checkpoint_ledger, sealed
    from privtrain.privacy.events import dumps

    s, dp, dataset = p.settings, p.dp, p.dataset
    out.mkdir(parents=True, exist_ok=True)
    prior_steps = p.resume["meta"]["steps"] if p.resume else 0
    guarantee = guarantees[-1]  # this training run's own guarantee
    ckpt = out / "checkpoint.pt"
    sealed.save_torch({  # sealed when a key is configured (privtrain.artifacts.sealed)
        "model": outcome.model.state_dict(), "optimizer": outcome.optimizer_state, "accountant": outcome.accountant_state,
        "meta": {"fingerprint": dataset.fingerprint, "steps": prior_steps + outcome.steps,
                 "noise_multiplier": dp.noise_multiplier if dp else None, "sample_rate": dp.sample_rate if dp else None,
                 "events": dumps(guarantee.events), "delta": guarantee.delta, "epsilon": str(guarantee.epsilon),
                 "model": s.model.to_dict(), "config_hash": s.config_hash, "schema": dataset.schema.to_dict(),
                 "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
                 "ledger": checkpoint_ledger.stamp(s.ledger.path, reserved.run_id)},  # a resume continues there
    }, ckpt)
    dp_info = {"noise_multiplier": dp.noise_multiplier, "sample_rate": dp.sample_rate, "steps": outcome.steps,
               "max_grad_norm": dp.max_grad_norm, "accountant": dp.accountant, "delta": dp.delta,
               "expected_batch_size": p.train.batch_size, "public_training_rows": p.public_rows,
               **_clipping_mode(p)} if dp else None
    record = RunRecord(
        recipe="dp_sgd", run_id=reserved.run_id, seed=s.seed, config_hash=s.config_hash, fingerprint=dataset.fingerprint,
        source={"key": reserved.source, "name": reserved.source_name, "kind": dataset.source.kind},
        dataset=s.dataset.to_dict(), guarantees=[g.to_dict() for g in guarantees], audit=_asdict(s.audit),
        ledger={"path": ledger_info["path"], "allow_non_private": s.ledger.allow_non_private,
                "default_budget": s.ledger.default_budget, "governance": ledger_info.get("governance")},
        model=models.record(outcome.model, s.model), train=_asdict(p.train), dp=dp_info, outputs={"checkpoint": ckpt.name},
        schema={**dataset.schema.to_dict(), "target": dataset.target,
                "image_shape": list(dataset.image_shape) if dataset.image_shape else None})
    files = [write_text(out / "config.yaml", s.config_yaml), ckpt, record.write(out)]
    files.append(write_json(out / "metrics.json", {
        "recipe": "dp_sgd", "metrics": metrics, "guarantee": guarantees[0].to_dict(),
        "guarantees": [g.to_dict() for g in guarantees], "dataset": info, "ledger": ledger_info, "dp": dp_info,
        **extra.metrics,  # fairness (held-out split) and the monitoring references' ε
    }))
    described = models.describe(outcome.model, s.model)
    card = model_card.render(
        recipe="dp_sgd", intended_use=INTENDED_USE, dataset=info, guarantees=guarantees, metrics=metrics,
        lineage=reserved.lineage.describe() if reserved.lineage is not None else None,
        model=f"{described}; weights are the EMA of the DP iterates" if dp else f"{described}, trained without DP",
        ledger=ledger_info, sbom=reserved.sbom, not_covered=model_card.OPACUS_NOT_COVERED + models.not_covered(outcome.model),
        mechanism=_mechanism(p, outcome, info) if dp is not None else {"kind": "none", "what": "the model"},
    )
    files.append(model_card.write(out / "model_card.md", card))
    extra.add_to_card(out / "model_card.md")
    return files


def _mechanism(p: Planned, outcome, info: dict) -> dict:
    """What the card says DP-SGD did: the values the run used."""
    dp, t = p.dp, p.train
    return {"kind": "dp_sgd", "max_grad_norm": dp.max_grad_norm, "noise_multiplier": dp.noise_multiplier,
            "sample_rate": dp.sample_rate, "batch_size": t.batch_size,  # the expected batch and the divisor
            "steps": outcome.steps, "epochs": t.epochs, "lr": t.lr, "optimizer": t.optimizer,
            "accountant": dp.accountant, "delta": dp.delta, **_clipping_mode(p)}


def _clipping_mode(p: Planned) -> dict:
    """The per-sample-gradient mode that ran and why (run.json, metrics.json and the card)."""
    chosen = p.clipping_mode
    return {"grad_sample_mode": p.train.grad_sample_mode,
            "grad_sample_mode_reason": chosen.reason if chosen is not None else "as configured"}


def _asdict(value) -> dict:
    from dataclasses import asdict

    return asdict(value)
