"""Recipe ``synthetic``: synthetic rows from SDV's synthesizers, or from a DP synthesizer.

Features and the keys that turn them on:

- synthesizer:                      ``synth.model=gaussian_copula|ctgan|tvae|copulagan`` (SDV, ε = ∞)
                                    or ``synth.model=dp_gaussian_copula`` ((ε, δ)-DP per example)
- hyperparameters:                  ``synth.<model>.*``, e.g. ``synth.ctgan.epochs=50``
- DP budget:                        ``synth.dp_gaussian_copula.epsilon``, ``.delta``
- rows and format:                  ``synth.num_rows``, ``synth.format=csv|parquet``
- metadata:                         detected by SDV and saved, or ``synth.metadata=reviewed.json``
- PII:                              SDV's sdtypes plus privtrain's check (``synth.pii_check``); never copied
- reports:                          ``synth.report`` (quality, diagnostic, DCR), ``synth.utility.*`` (TSTR/TRTR)
- non-DP on a budgeted dataset:     ``ledger.allow_non_private=true``
- dry run:                          ``--dry-run`` / ``ledger.plan_only=true``

Order: load + fingerprint -> plan -> ledger reservation -> split, fit, sample -> write rows,
metadata and schema -> register the rows as derived -> reports -> ledger commit. Nothing
reads the rows for fitting before the reservation.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from privtrain import config, data, ledger
from privtrain.artifacts.run_dir import hash_artifacts, write_config, write_json
from privtrain.data.schema import Column
from privtrain.errors import UserError
from privtrain.privacy.dp_sgd import default_delta
from privtrain.privacy.events import non_private_event
from privtrain.result import Guarantee, RunResult
from privtrain.synthetic import DP_MODELS, MODELS, quiet_logs
from privtrain.synthetic import source as source_mod
from privtrain.synthetic.source import Source

UNIT = "example"
# privtrain.audit.synthetic reuses the recipe's loader and split, so members/non-members match the run exactly.
_load, _split = source_mod.load_source, source_mod.split


@dataclass(frozen=True)
class Settings:
    """``synth.*`` as plain values."""

    model: str
    num_rows: int | None
    fmt: str
    metadata: str | None
    pii_check: bool
    common: dict
    params: dict
    report: bool
    utility: bool
    classifier: str


def run(cfg, output_dir: Path) -> RunResult:
    output_dir = Path(output_dir)
    quiet_logs()
    _refuse_other_recipes_groups(cfg)
    s = _settings(cfg.synth)
    _check_settings(s)
    spec = config.dataset_spec(cfg.dataset)
    source = source_mod.load_source(spec, need_target=s.utility)
    n_train = len(source.frame) - math.ceil(spec.test_size * len(source.frame))
    num_rows = n_train if s.num_rows is None else s.num_rows
    if num_rows <= 0:
        raise UserError(f"synth.num_rows={num_rows} must be a positive number of rows (or null for {n_train}).")
    private = s.model in DP_MODELS
    domain, notes, dp = None, [], None
    if private:
        from privtrain.synthetic import dp_copula

        domain, notes = source_mod.dp_domain(source, s.model, s.metadata)
        delta = source_mod.dp_delta(s.params.get("delta"), n_train)
        dp = dp_copula.plan(epsilon=float(s.params["epsilon"]), delta=delta, n_columns=len(domain),
                            bins=int(s.params["bins"]), marginal_share=float(s.params["marginal_share"]),
                            row_clip=float(s.params["row_clip"]))
        events, epsilon = dp.events, dp.epsilon
    else:
        delta, events, epsilon = default_delta(n_train), (non_private_event(),), math.inf
    reviewed = _reviewed_metadata(s, source) if not private else None  # a mismatch is an error before any charge
    run_id = f"synthetic-{secrets.token_hex(6)}"
    book = ledger.open(cfg.ledger.path)
    lineage = book.lineage(source.fingerprint)  # synthesizing from synthetic rows is post-processing too
    charge = ledger.Charge(
        run_id=run_id, recipe="synthetic", dataset_fingerprint=source.fingerprint, dataset_name=source.name,
        unit=UNIT, events=tuple(events), delta=delta, epsilon=epsilon, config_hash=config.config_hash(cfg),
        allow_non_private=bool(cfg.ledger.allow_non_private),
        default_budget=config.default_budget(cfg.ledger.default_budget),
        parent_fingerprint=lineage.parent_fingerprint if lineage else None,
    )
    dataset_info = {"name": source.name, "fingerprint": source.fingerprint, "n_rows": len(source.frame)}
    if cfg.ledger.plan_only:
        plan = book.plan(charge)
        return RunResult("synthetic", output_dir, {}, [], dataset_info, {"plan": plan.render()}, dry_run=True)

    with book.charging(charge) as entry:
        # Only now, with the budget reserved, are the rows read for fitting.
        train, test = source_mod.split(source, seed=int(cfg.seed), test_size=spec.test_size)
        output_dir.mkdir(parents=True, exist_ok=True)
        table = source_mod.table_name(source.name)
        if private:
            from privtrain.synthetic import dp_copula, metadata

            model = dp_copula.fit(train, domain, dp, seed=int(cfg.seed))
            rows = model.sample(num_rows, seed=int(cfg.seed) + 1)
            meta, findings, replaced = metadata.from_schema(domain, table), [], {}
            dropped = [c for c in source.frame.columns if c not in rows.columns]
            if dropped:
                notes.append(f"columns outside the declared domain were not synthesized: {dropped[:10]}")
            saved_meta = meta.to_dict()
        else:
            rows, meta, findings, replaced, saved_meta = _fit_sdv(s, source, train, table, reviewed, num_rows,
                                                                  int(cfg.seed))
        from privtrain.synthetic import pii

        leaks = pii.verbatim_leaks(train, rows, [f.column for f in findings])
        guarantee = _guarantee(private, dp, delta, events, source, lineage, findings, notes)
        files, child = _write_outputs(output_dir, s, rows, saved_meta, source, domain, findings, guarantee, run_id)
        derived = book.register_derived(
            child.fingerprint, f"{source.name}-synthetic", source.fingerprint, run_id,
            lineage.events if lineage else events, lineage.epsilon if lineage else epsilon,
            lineage.delta if lineage else delta, UNIT)
        guarantee = dataclasses.replace(guarantee, notes=guarantee.notes + (
            f"synthetic rows: {files[0]} (fingerprint {child.fingerprint[:12]}), registered in the ledger as "
            f"derived from {source.name}; training on them charges nothing new to it",))
        metrics = _evaluate(s, train, test, rows, meta, table, source, findings, int(cfg.seed))
        metrics.update(pii_verbatim_values=sum(leaks.values()), pii_collisions_replaced=sum(replaced.values()))
        ledger_info = _ledger_summary(book, entry)
        dataset_info.update(n_train=len(train), n_test=len(test),
                            schema=source.schema.source if source.schema is not None else "sdv-detected")
        output_info = {"path": str(files[0]), "fingerprint": child.fingerprint, "n_rows": len(rows),
                       "target": child.target,
                       "metadata": str(files[1]), "schema": str(files[2]), "lineage": derived.describe()}
        files += _write_report(output_dir, s, source, guarantee, output_info, findings, leaks, replaced, metrics,
                               len(train), len(test))
        files.append(write_config(output_dir / "config.yaml", cfg))
        files.append(write_json(output_dir / "metrics.json", {
            "recipe": "synthetic", "synthesizer": s.model, "metrics": _public(metrics),
            "guarantee": guarantee.to_dict(), "guarantees": [guarantee.to_dict()], "dataset": dataset_info,
            "output": output_info, "pii": [f.to_dict() for f in findings], "ledger": ledger_info,
            "dp": dataclasses.asdict(dp) if dp else None,
        }))
        entry.commit(events, artifacts=hash_artifacts(files, output_dir), epsilon=epsilon)
    result = RunResult("synthetic", output_dir, _public(metrics), [guarantee], dataset_info, ledger_info)
    result.dataset["output"] = output_info
    if cfg.audit.enabled:
        from privtrain.audit import audit_run

        result.metrics["audit"] = audit_run(output_dir)
    return result


# --- config -> plain values ------------------------------------------------------------


def _refuse_other_recipes_groups(cfg) -> None:
    for group, hint in (("model", "synth.utility.classifier picks the utility classifier"),
                        ("privacy", "a DP synthesizer is synth.model=dp_gaussian_copula with "
                                    "synth.dp_gaussian_copula.epsilon"),
                        ("fl", "federated settings belong to `privtrain run federated`")):
        if cfg.get(group) is not None:
            raise UserError(f"{group}=... does not apply to the synthetic recipe; drop it ({hint}).")


def _settings(node) -> Settings:
    d = config.plain(node)
    model = d["model"]
    if model not in MODELS:
        raise UserError(f"synth.model={model!r} is unknown; choose one of {', '.join(MODELS)}.")
    common = {k: d[k] for k in ("enforce_min_max_values", "enforce_rounding", "locales")}
    num_rows = d["num_rows"]
    if num_rows is not None and (isinstance(num_rows, bool) or not isinstance(num_rows, int)):
        raise UserError(f"synth.num_rows={num_rows!r} must be a whole number of rows (or null).")
    return Settings(model=model, num_rows=num_rows, fmt=str(d["format"]), metadata=d["metadata"],
                    pii_check=bool(d["pii_check"]), common=common, params=dict(d[model] or {}),
                    report=bool(d["report"]), utility=bool(d["utility"]["enabled"]),
                    classifier=str(d["utility"]["classifier"]))


def _check_settings(s: Settings) -> None:
    """Every setting a user can get wrong fails here, before the ledger is touched."""
    from privtrain.synthetic import output, utility

    if s.fmt not in output.FORMATS:
        raise UserError(f"synth.format={s.fmt!r} is unknown; choose one of {', '.join(output.FORMATS)}.")
    if s.utility and s.classifier not in utility.CLASSIFIERS:
        raise UserError(f"synth.utility.classifier={s.classifier!r} is unknown; choose one of "
                        f"{', '.join(utility.CLASSIFIERS)}.")
    if s.model not in DP_MODELS:
        from privtrain.synthetic import sdv_models

        sdv_models.check_params(s.model, s.params)


def _reviewed_metadata(s: Settings, source: Source):
    if not s.metadata:
        return None
    from privtrain.synthetic import metadata

    return metadata.load(s.metadata, source.frame, source_mod.table_name(source.name))


# --- fitting -------------------------------------------------------------------------------


def _fit_sdv(s: Settings, source: Source, train: pd.DataFrame, table: str, reviewed, num_rows: int, seed: int):
    from privtrain.synthetic import metadata, pii, sdv_models

    # Detected on the whole table, so the saved metadata.json validates against this dataset for any split seed.
    meta = reviewed if reviewed is not None else metadata.detect(source.frame, table)
    skip = {source.target} if source.target in train.columns else set()
    meta, findings = metadata.mark_pii(meta, train, table, check=s.pii_check, skip=skip)
    synthesizer = sdv_models.build(s.model, meta, params=s.params, common=s.common)
    rows = sdv_models.fit_sample(synthesizer, train, table, num_rows=num_rows, seed=seed)
    rows, replaced = pii.scrub_collisions(train, rows, findings, seed=seed, locales=s.common.get("locales") or ["en_US"])
    return rows, meta, findings, replaced, metadata.saved_dict(meta, findings)


def _guarantee(private, dp, delta, events, source, lineage, findings, notes) -> Guarantee:
    notes = list(notes)
    if findings:
        notes.append("PII columns, regenerated by SDV and never copied: "
                     + ", ".join(f"{f.column} ({f.sdtype}, {f.source})" for f in findings))
    if lineage is not None:
        notes.append(f"synthesized from derived data: toward {lineage.parent_name}'s real rows these rows inherit "
                     "its guarantee (post-processing)")
        return Guarantee(lineage.epsilon, lineage.delta, lineage.unit, "lineage", tuple(lineage.events), tuple(notes))
    if not private:
        notes.append("an SDV synthesizer fits the real rows without noise: these rows are not differentially private")
        return Guarantee(math.inf, delta, UNIT, "none", tuple(events), tuple(notes))
    return Guarantee(dp.epsilon, dp.delta, UNIT, "pld", tuple(events), tuple(notes))


# --- artifacts --------------------------------------------------------------------------------


def _write_outputs(out: Path, s: Settings, rows, saved_meta, source: Source, domain, findings, guarantee, run_id):
    from privtrain.synthetic import metadata, output

    rows_path = output.write_rows(rows, out, s.fmt)
    meta_path = metadata.save(saved_meta, out / "metadata.json")
    pii_cols = {f.column for f in findings}
    target = source.target if source.target in rows.columns else None
    if domain is not None:
        columns, note = output.declared_columns(domain, rows), "bounds: the DP synthesizer's declared public domain"
    elif source.schema is not None and source.schema.source in ("builtin", "declared"):
        cols = [*source.schema.features, Column(source.target, categories=tuple(source.schema.classes))]
        columns, note = output.declared_columns(cols, rows), f"bounds: the parent's {source.schema.source} schema"
    else:
        columns = output.columns_from_rows(rows, pii_cols, target)
        note = "bounds read off the synthetic rows (post-processing of the synthesizer's output)"
    schema_file = output.write_schema(rows_path, columns=columns, target=target, note=note, parent={
        "name": source.name, "fingerprint": source.fingerprint, "run_id": run_id,
        "epsilon": "inf" if math.isinf(guarantee.epsilon) else guarantee.epsilon, "delta": guarantee.delta})
    child = data.load(data.DatasetSpec(name="synthetic", path=str(rows_path), target=target))
    return [rows_path, meta_path, schema_file], child


def _evaluate(s: Settings, train, test, rows, meta, table, source: Source, findings, seed: int) -> dict:
    from privtrain.synthetic import reports, utility

    metrics: dict = {}
    real = train[[c for c in rows.columns if c in train.columns]]
    if s.report:
        metrics["_quality"] = reports.quality(real, rows, meta)
        metrics["privacy"] = reports.dcr(real, rows, test[real.columns], meta, table, seed=seed)
    if s.utility:
        metrics["utility"] = utility.tstr_trtr(train, rows, test, target=source.target,
                                               exclude={f.column for f in findings}, classifier=s.classifier, seed=seed)
        if "tstr_accuracy" in metrics["utility"]:
            metrics["tstr_accuracy"] = metrics["utility"]["tstr_accuracy"]
            metrics["trtr_accuracy"] = metrics["utility"]["trtr_accuracy"]
    return metrics


def _public(metrics: dict) -> dict:
    from privtrain.synthetic.reports import public_numbers

    out = {k: v for k, v in metrics.items() if not k.startswith("_")}
    if "_quality" in metrics:
        out["quality"] = public_numbers(metrics["_quality"])
        out["quality_score"] = out["quality"]["quality_score"]
    return out


def _write_report(out: Path, s: Settings, source: Source, guarantee, output_info, findings, leaks, replaced,
                  metrics, n_train: int, n_test: int) -> list[Path]:
    from privtrain.synthetic import reports

    q = metrics.get("_quality")
    pngs = reports.plots(out, q) if q is not None else []
    text = reports.render(
        title=f"Synthetic data report: {s.model} on {source.name}", guarantee=guarantee.describe(),
        rows={"real training rows": n_train, "real held-out rows": n_test, "synthetic rows": output_info["n_rows"],
              "lineage": output_info["lineage"]},
        files=[Path(output_info["path"]).name, "metadata.json", Path(output_info["schema"]).name],
        findings=[f.to_dict() for f in findings], leaks=leaks, replaced=replaced, q=q,
        privacy=metrics.get("privacy"), utility=metrics.get("utility"), notes=list(guarantee.notes), pngs=pngs,
        pii_note=("The DP synthesizer emits only the columns of its declared domain, with values drawn from the "
                  "declared bounds and categories; any other column (PII included) is left out."
                  if s.model in DP_MODELS else None))
    path = out / "report.md"
    path.write_text(text)
    return [path, *pngs]


def _ledger_summary(book, entry) -> dict:
    plan = entry.plan
    remaining = None if plan.budget is None else max(0.0, plan.budget.epsilon - plan.after)
    return {"path": str(book.path), "entry": entry.run_id, "unit": UNIT, "spent_after_run": plan.after,
            "remaining": remaining, "budget": None if plan.budget is None else
            {"epsilon": plan.budget.epsilon, "delta": plan.budget.delta}}
