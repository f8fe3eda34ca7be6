"""Audit a ``dp_sgd`` run directory: rebuild members and non-members, attack, report.

Order: read the run -> settings -> (shadows: plan their charge, refuse or reserve)
-> rebuild the split and the model -> cheap attacks -> LiRA -> report -> commit.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from privtrain.audit.settings import AuditSettings
from privtrain.errors import UserError

if TYPE_CHECKING:
    from privtrain.artifacts.record import RunRecord

SHADOW_RECIPE = "audit-shadow"


@dataclass(frozen=True)
class RunInfo:
    """What the audit needs from a run directory: its record and its own claim."""

    run_dir: Path
    record: RunRecord
    metrics: dict
    claimed_epsilon: float
    delta: float
    unit: str


def read_run(run_dir: Path, record: RunRecord) -> RunInfo:
    """The run's claim and metrics; UserError if the directory is not an auditable run."""
    for name in ("metrics.json", record.outputs.get("checkpoint") or "checkpoint.pt"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: no {name}; pass the output directory of a finished dp_sgd run.")
    metrics = read_metrics(run_dir)
    own = record.own_guarantee  # the run's own guarantee on its training rows (not an inherited one)
    eps = math.inf if own["epsilon"] == "inf" else float(own["epsilon"])
    return RunInfo(run_dir, record, metrics, eps, float(own["delta"]), own["unit"])


def read_metrics(run_dir: Path) -> dict:
    """``metrics.json`` of a run directory.

    Raises:
        UserError: it is not the JSON object a run writes (edited or cut short).
    """
    file = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        metrics = None
    if not isinstance(metrics, dict):
        raise UserError(
            f"{file} is not a run's metrics (not a JSON object: edited or cut short); audit an unmodified "
            f"run directory (privtrain verify {run_dir} names the files that changed)."
        )
    return metrics


def _dataset(run: RunInfo):
    from privtrain import data

    return data.load(data.DatasetSpec.from_dict(run.record.dataset))


def _model_spec(run: RunInfo):
    from privtrain.models import ModelSpec

    if run.record.model is None:
        raise UserError(
            f"{run.run_dir}: its run record names no model (not a trained model's run); pass the "
            "output directory of a finished dp_sgd run."
        )
    return ModelSpec.from_dict(run.record.model)


def audit_dp_sgd(run: RunInfo, settings: AuditSettings, ledger_path: str | None) -> dict:
    from contextlib import nullcontext

    from privtrain import data
    from privtrain.artifacts.run_dir import hash_artifacts
    from privtrain.audit import attacks, report

    started = time.perf_counter()
    record = run.record
    dataset = _dataset(run)
    if dataset.fingerprint != record.fingerprint:
        raise UserError(
            f"{run.run_dir}: the dataset its run record names has changed since the run "
            "(fingerprints differ); audit with the original data."
        )
    seed = record.seed if settings.seed is None else settings.seed
    shadow = _shadow_plan(run, settings, dataset, ledger_path) if settings.shadow_models else None
    charged = shadow is not None and shadow["data"] == "charged"
    # Shadows on the private rows are reserved before anything reads them; a crash stays charged.
    with _reserve(run, shadow, dataset, ledger_path) if shadow is not None and charged else nullcontext() as entry:
        splits = data.split(dataset, seed=record.seed, test_size=float(record.dataset["test_size"]))
        model = _load_target(run, splits, dataset)
        target_in = attacks.model_outputs(model, splits.x_train, splits.y_train)
        target_out = attacks.model_outputs(model, splits.x_test, splits.y_test)
        scores = {name: (target_in.scores()[name], target_out.scores()[name]) for name in ("loss", "confidence")}
        shadow_info = None
        if shadow is not None:
            rng = np.random.default_rng([seed, 0xA0D17])
            scores["lira"], shadow_info = _run_lira(run, shadow, splits, dataset, target_in, target_out, rng, seed)
            if entry is not None:
                shadow_info["ledger_entry"] = entry.run_id
                shadow_info["ledger_after"] = entry.summary()["charges"][0]  # the source's spend with the shadows
        results = {
            name: attacks.attack_metrics(m, nm, delta=run.delta, confidence=settings.confidence, n_attacks=len(scores))
            for name, (m, nm) in scores.items()
        }
        audit = report.assemble(
            run,
            settings,
            {"name": dataset.name, "fingerprint": dataset.fingerprint},
            results,
            shadow_info,
            n_members=len(splits.y_train),
            n_nonmembers=len(splits.y_test),
            n_attacks=len(scores),
        )
        audit["seconds"] = round(time.perf_counter() - started, 2)
        files = report.write(run.run_dir, audit, scores, update_card=settings.update_card)
        if entry is not None and shadow is not None:  # an entry exists only for charged shadows
            entry.commit(
                {run.unit: shadow["events"]}, artifacts=hash_artifacts(files, run.run_dir), epsilon=shadow["epsilon"]
            )
    return audit


# --- the target model ---------------------------------------------------------


def _load_target(run: RunInfo, splits, dataset):
    from privtrain import models
    from privtrain.artifacts import checkpoint

    model = models.build(
        _model_spec(run),
        n_inputs=splits.x_train.shape[1],
        n_classes=len(splits.classes),
        image_shape=dataset.image_shape,
    )
    from privtrain.artifacts.run_dir import sha256_file
    from privtrain.artifacts.verify import recorded_hashes

    _, hashes, _ = recorded_hashes(run.run_dir)  # loaded only after its hash matches the ledger entry
    if hashes.get("checkpoint.pt") != sha256_file(run.run_dir / "checkpoint.pt"):
        raise UserError(
            f"{run.run_dir}/checkpoint.pt does not match the hash its ledger entry recorded: it was "
            "edited or replaced; audit an unmodified run directory."
        )
    try:  # weights and plain values only: a crafted pickle cannot run code here
        ckpt = checkpoint.load(run.run_dir / "checkpoint.pt")  # opened with the configured key when sealed
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UserError(
            f"{run.run_dir}/checkpoint.pt does not load safely ({type(exc).__name__}); audit an "
            "unmodified run directory."
        ) from None
    if ckpt.get("meta", {}).get("fingerprint") != dataset.fingerprint:
        raise UserError(
            f"{run.run_dir}/checkpoint.pt was not trained on the dataset its run record names "
            "(fingerprints differ); audit an unmodified run directory."
        )
    model.load_state_dict(ckpt["model"])
    return model


# --- shadows: plan, charge, train ----------------------------------------------


def _shadow_plan(run: RunInfo, settings: AuditSettings, dataset, ledger_path: str | None) -> dict:
    """Shadow sizes and DP settings, the events they apply, and the refusal when no data source is chosen."""
    from privtrain.privacy import dp_sgd as dp_plan
    from privtrain.privacy.events import epsilon_pld, non_private_event
    from privtrain.training import TrainSettings

    k = settings.shadow_models
    if run.record.train is None:
        raise UserError(
            f"{run.run_dir}: its run record has no training settings (not a trained model's run); "
            "pass the output directory of a finished dp_sgd run."
        )
    train_settings = TrainSettings(**run.record.train)  # the target's resolved settings, as it trained
    if train_settings.epochs is None:
        raise UserError(
            f"{run.run_dir}: its run record's training settings have no resolved epochs (edited); "
            "audit an unmodified run directory."
        )
    pool = None
    if settings.shadow_data == "pool":
        if settings.pool_path is None:  # AuditSettings refuses this; checked again for the type
            raise UserError("audit.shadow_data=pool needs audit.pool_path=/path/to/pool.csv.")
        pool = _load_pool(settings.pool_path, dataset, run, ledger_path)
    n_pool = dataset.n_rows if pool is None else len(pool[1])
    half = n_pool // 2
    if half < train_settings.batch_size:
        raise UserError(
            f"audit: each shadow model trains on {half} rows (half of {n_pool}), fewer than "
            f"recipe.batch_size={train_settings.batch_size}; audit with audit.shadow_models=0, "
            "or use a larger audit pool."
        )
    dp_meta = run.record.dp
    if dp_meta is not None:
        # Same mechanism as the target (noise multiplier, clipping, batch size, epochs) on half the rows.
        dp = dp_plan.plan(
            n_train=half,
            batch_size=train_settings.batch_size,
            epochs=train_settings.epochs,
            target_epsilon=None,
            noise_multiplier=float(dp_meta["noise_multiplier"]),
            delta=run.delta,
            max_grad_norm=float(dp_meta["max_grad_norm"]),
            accountant=str(dp_meta["accountant"]),
        )
        # Each row is in K/2 shadows (complementary halves), so its privacy loss composes K/2 trainings.
        events = tuple(dp.events) * (k // 2)
        epsilon = epsilon_pld(list(events), run.delta)
    else:
        dp, events, epsilon = None, (non_private_event(),), math.inf
    plan = {
        "k": k,
        "data": settings.shadow_data,
        "pool": pool,
        "pool_path": settings.pool_path,
        "half": half,
        "dp": dp,
        "events": events,
        "epsilon": epsilon,
        "settings": train_settings,
    }
    if settings.shadow_data is None:
        cost = "epsilon=inf (non-private shadows)" if dp is None else f"epsilon={epsilon:.3g} at delta={run.delta:g}"
        raise UserError(
            f"audit.shadow_data is not set: LiRA trains {k} shadow models on halves of the private dataset "
            f"{dataset.name!r}, which would charge {cost} to the ledger. Choose audit.shadow_data=charged "
            "(privtrain audit --shadow-data charged) to accept the charge, audit.shadow_data=pool with "
            "audit.pool_path=FILE to use declared audit data, or audit.shadow_models=0 for the free attacks only."
        )
    return plan


def _reserve(run: RunInfo, shadow: dict, dataset, ledger_path: str | None):
    """The ledger's one door for the shadows: the project's policy judges them like any run (recipe
    ``audit-shadow``), then their charge is reserved (raises before anything trains)."""
    from privtrain import data, ledger, policy

    record = run.record
    book = ledger.open(ledger_path if ledger_path is not None else record.ledger["path"])
    spec = data.DatasetSpec.from_dict(record.dataset)
    private = math.isfinite(shadow["epsilon"])
    stated = record.ledger.get("governance") or {}  # the audited run's purpose and region bind its shadows too
    facts = policy.RunFacts(
        SHADOW_RECIPE,
        policy.source_name(spec),
        tuple(spec.tags),
        private,
        (run.unit,),
        shadow["epsilon"] if private else None,
        run.delta if private else None,
        purpose=stated.get("purpose"),
        region=stated.get("region"),
    )
    rules = policy.evaluate(book, facts, record.ledger.get("policy"))
    default = record.ledger.get("default_budget")
    settings = ledger.LedgerSettings(
        allow_non_private=bool(record.ledger.get("allow_non_private")),
        default_budget=tuple(default) if default else None,
    )
    access = ledger.Access(
        dataset.source,
        dataset.fingerprint,
        (ledger.Mechanism(run.unit, tuple(shadow["events"]), run.delta, shadow["epsilon"]),),
        table=dataset.identity_table,
        id_column=dataset.id_column,
    )
    request = ledger.RunRequest.of(
        SHADOW_RECIPE, access, config_hash=record.config_hash, ledger=settings, policy=rules, facts=facts
    )
    return book.charging(request)


def _load_pool(path: str, dataset, run: RunInfo, ledger_path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The declared audit pool as arrays, after checking it is not (part of) the private dataset."""
    from privtrain import ledger
    from privtrain.data.files import read_table
    from privtrain.data.fingerprint import canonical_rows, fingerprint_frame

    kind = "parquet" if str(path).endswith(".parquet") else "csv"
    try:
        frame = read_table(path, kind)
    except UserError as exc:
        raise UserError(str(exc).replace("dataset.path", "audit.pool_path")) from None
    columns = [*dataset.features, dataset.target]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"audit.pool_path: {path} lacks column(s) {missing[:5]} of dataset {dataset.name!r}; "
            "the pool needs the same columns as the private data."
        )
    frame = frame[columns]
    private_rows = set(canonical_rows(dataset.frame[columns]))
    shared = sum(row in private_rows for row in canonical_rows(frame))
    if shared:
        raise UserError(
            f"audit.pool_path: {shared} row(s) of {path} are rows of the private dataset "
            f"{dataset.name!r}; the pool must be separate data, or use audit.shadow_data=charged."
        )
    fp = fingerprint_frame(frame)  # order-independent
    book = ledger.open(ledger_path if ledger_path is not None else run.record.ledger["path"])
    known = book.links(frame, fp)
    budgeted = any(s.source == fp and s.budget is not None for s in book.sources())
    if known or budgeted:
        why = known[0].reason if known else "it has a privacy budget"
        raise UserError(
            f"audit.pool_path: {path} is private data known to the ledger {book.path} ({why}); "
            "declare public audit data, or use audit.shadow_data=charged."
        )
    x = dataset.schema.transform(frame)
    y = dataset.schema.encode_target(frame[dataset.target])
    return x, y


def _run_lira(run, shadow, splits, dataset, target_in, target_out, rng, seed):
    from privtrain.audit import attacks, lira

    target_phi = np.r_[target_in.logit_confidence, target_out.logit_confidence]
    x_all = np.concatenate([splits.x_train, splits.x_test])
    y_all = np.concatenate([splits.y_train, splits.y_test])
    x_pool, y_pool = (x_all, y_all) if shadow["pool"] is None else shadow["pool"]
    inside = lira.shadow_halves(len(y_pool), shadow["k"], rng)
    started = time.perf_counter()
    with _one_thread():
        shadow_phi = np.stack(
            [
                attacks.model_outputs(
                    _train_shadow(run, shadow, splits, dataset, x_pool[mask], y_pool[mask], seed * 1000 + j),
                    x_all,
                    y_all,
                ).logit_confidence
                for j, mask in enumerate(inside)
            ]
        )
    seconds = time.perf_counter() - started
    if shadow["pool"] is None:
        scores, variant = lira.online_scores(target_phi, shadow_phi, inside), "online"
    else:
        scores, variant = lira.offline_scores(target_phi, shadow_phi), "offline"
    n_in = len(splits.y_train)
    info = {
        "models": shadow["k"],
        "data": shadow["data"],
        "variant": variant,
        "train_rows_each": shadow["half"],
        "train_seconds": round(seconds, 2),
        "charged_epsilon": shadow["epsilon"] if shadow["data"] == "charged" else 0.0,
        "events": [_event_json(e) for e in shadow["events"]] if shadow["data"] == "charged" else [],
        "noise_multiplier": None if shadow["dp"] is None else shadow["dp"].noise_multiplier,
        "pool_path": shadow["pool_path"] if shadow["pool"] is not None else None,
    }
    return (scores[:n_in], scores[n_in:]), info


@contextmanager
def _one_thread():
    """Train shadows with one intra-op thread: these models are small, so threads only add overhead,
    and on a busy machine oversubscribed threads made training over 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _event_json(event) -> dict:
    from privtrain.privacy.events import to_json

    return to_json(event)


def _train_shadow(run, shadow, splits, dataset, x, y, seed):
    from dataclasses import replace

    from privtrain import models, training

    model = models.build(
        _model_spec(run), n_inputs=x.shape[1], n_classes=len(splits.classes), image_shape=dataset.image_shape
    )
    settings = replace(shadow["settings"], progress=False)
    return training.train(model, x, y, settings, dp=shadow["dp"], seed=seed, desc="audit shadow").model
