"""Recipe ``synthetic``: synthetic rows from SDV's synthesizers, or from a DP synthesizer.

Features and the keys that turn them on:

- synthesizer:                      ``synth=gaussian_copula|ctgan|tvae|copulagan`` (SDV, ε = ∞)
                                    or ``synth=dp_gaussian_copula`` ((ε, δ)-DP per example)
- hyperparameters:                  ``synth.<key>``, e.g. ``synth=ctgan synth.epochs=50``
- DP budget:                        ``synth=dp_gaussian_copula synth.epsilon=1 synth.delta=1e-6``
- rows and format:                  ``synth.num_rows``, ``synth.format=csv|parquet``
- metadata:                         detected by SDV and saved, or ``synth.metadata=reviewed.json``
- PII:                              SDV's sdtypes plus privtrain's check (``synth.pii_check``); never copied
- reports:                          ``synth.report`` (quality, diagnostic, DCR), ``synth.utility.*`` (TSTR/TRTR)
- non-DP on a budgeted source:      ``ledger.allow_non_private=true``
- dry run:                          ``--dry-run`` / ``ledger.plan_only=true``

:func:`plan` loads and identifies the real table and plans the synthesizer; the API has the ledger
reserve it (DP and non-DP synthesizers alike charge the source); :func:`train` splits, fits,
samples, writes the rows, metadata and schema, and reports. The ledger registers the rows as
derived from the source when it commits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from privtrain import data
from privtrain.data.synthetic import held_out_reference
from privtrain.artifacts.record import RunRecord
from privtrain.artifacts.run_dir import write_json, write_text
from privtrain.data.schema import Column
from privtrain.errors import UserError
from privtrain.ledger import Access, Lineage, Mechanism
from privtrain.privacy.dp_sgd import default_delta
from privtrain.privacy.events import dumps, non_private_event
from privtrain.privacy.randomness import VOID_NOTE, numpy_generator
from privtrain.result import Guarantee, Outcome, RunResult
from privtrain.synthetic import DP_MODELS, quiet_logs
from privtrain.synthetic import source as source_mod
from privtrain.synthetic.settings import SynthSettings
from privtrain.synthetic.source import RealTable

UNIT = "example"


@dataclass(frozen=True)
class Planned:
    settings: object  # privtrain.config.RunSettings
    real: RealTable
    domain: list | None
    notes: list
    dp: object | None  # dp_copula.DpCopulaPlan
    events: tuple
    delta: float
    epsilon: float
    num_rows: int
    reviewed: object | None
    access: Access
    dataset_info: dict
    void: tuple[str, ...] = ()  # why a DP synthesizer's guarantee is void (ε = ∞)


def plan(s) -> Planned:
    """Load and identify the real table and plan the synthesizer. Reads no row for fitting."""
    quiet_logs()
    syn: SynthSettings = s.synth
    _check_settings(syn)
    real = source_mod.load_source(s.dataset, need_target=syn.utility, pii_handling=_pii_handling(syn))
    n_train = len(source_mod.split(real, seed=s.seed, test_size=s.dataset.test_size)[0])  # public, like n
    num_rows = n_train if syn.num_rows is None else syn.num_rows
    private = syn.model in DP_MODELS
    domain, notes, dp = None, [], None
    if private:
        from privtrain.synthetic import dp_copula

        domain, notes = source_mod.dp_domain(real, syn.model, syn.metadata)
        delta = source_mod.dp_delta(syn.params.get("delta"), n_train)
        dp = dp_copula.plan(epsilon=float(syn.params["epsilon"]), delta=delta, n_columns=len(domain),
                            bins=int(syn.params["bins"]), marginal_share=float(syn.params["marginal_share"]),
                            row_clip=float(syn.params["row_clip"]))
        events, epsilon = tuple(dp.events), dp.epsilon
    else:
        delta, events, epsilon = default_delta(n_train), (non_private_event(),), math.inf
    void = (VOID_NOTE,) if private and s.reproducible_noise else ()
    if void:  # the synthesizer still adds its noise (to debug it), but anyone with the seed can replay it
        events, epsilon = (non_private_event(),), math.inf
    reviewed = _reviewed_metadata(syn, real) if not private else None  # a mismatch fails before any charge
    access = Access(
        source=real.source, fingerprint=real.fingerprint, mechanisms=(Mechanism(UNIT, events, delta, epsilon),),
        table=real.frame, id_column=s.dataset.id_column)
    info = {"name": real.name, "source": real.source.key, "fingerprint": real.fingerprint, "n_rows": len(real.frame),
            "pii": real.pii}
    return Planned(s, real, domain, notes, dp, events, delta, epsilon, num_rows, reviewed, access, info, void)


def _pii_handling(syn: SynthSettings) -> str:
    """How this recipe treats identifiers the PII gate finds: its handling stands in for dropping them."""
    if syn.model in DP_MODELS:
        return "dp_synthesizer: only the declared domain's columns are synthesized, from noisy statistics"
    if syn.pii_check:
        return "anonymized: regenerated by SDV's Faker anonymizers, never copied"
    return "unhandled: synth.pii_check=false, copied unless SDV typed the column as PII"


def train(p: Planned, reserved, output_dir: Path) -> Outcome:
    """Fit, sample, write and report; the budget is already reserved."""
    s, syn, real, dp = p.settings, p.settings.synth, p.real, p.dp
    output_dir = Path(output_dir)
    notes = list(p.notes)
    train_rows, test = source_mod.split(real, seed=s.seed, test_size=s.dataset.test_size)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = source_mod.table_name(real.name)
    if dp is not None:
        from privtrain.synthetic import dp_copula, metadata

        noise = numpy_generator(s.seed if s.reproducible_noise else None, "dp-copula")  # secret, never `seed`
        model = dp_copula.fit(train_rows, p.domain, dp, rng=noise)
        rows = model.sample(p.num_rows, seed=s.seed + 1)  # sampling the released model is post-processing
        meta, findings, replaced = metadata.from_schema(p.domain, table), [], {}
        dropped = [c for c in real.frame.columns if c not in rows.columns]
        if dropped:
            notes.append(f"columns outside the declared domain were not synthesized: {dropped[:10]}")
        saved_meta = meta.to_dict()
    else:
        rows, meta, findings, replaced, saved_meta = _fit_sdv(syn, real, train_rows, table, p.reviewed, p.num_rows,
                                                              s.seed)
    from privtrain.synthetic import pii

    leaks = pii.verbatim_leaks(real.frame, rows, [f.column for f in findings])  # against every real row
    lineage = reserved.lineage
    guarantee = _guarantee(None if p.void else dp, p.delta, p.events, lineage, findings, notes + list(p.void))
    files, child = _write_outputs(output_dir, syn, rows, saved_meta, real, p.domain, findings, guarantee,
                                  reserved.run_id, held_out_reference(s.dataset, seed=s.seed))
    parent = lineage.parent if lineage else reserved.source
    derived = Lineage(child.fingerprint, f"{reserved.source_name}-synthetic", parent,
                      lineage.parent_name if lineage else reserved.source_name, reserved.run_id,
                      dumps(lineage.events if lineage else list(p.events)),
                      lineage.epsilon if lineage else p.epsilon, lineage.delta if lineage else p.delta, UNIT)
    guarantee = dataclasses.replace(guarantee, notes=guarantee.notes + (
        f"synthetic rows: {files[0]} (fingerprint {child.fingerprint[:12]}), registered in the ledger as "
        f"derived from source {derived.parent_name}; training on them charges nothing new to it",))
    metrics = _evaluate(syn, train_rows, test, rows, meta, table, real, findings, s.seed)
    metrics.update(pii_verbatim_values=sum(leaks.values()), pii_collisions_replaced=sum(replaced.values()))
    ledger_info = reserved.summary()
    info = dict(p.dataset_info, name=reserved.source_name, source=reserved.source, n_train=len(train_rows),
                n_test=len(test),
                schema=real.schema.source if real.schema is not None else "sdv-detected")
    output_info = {"path": str(files[0]), "fingerprint": child.fingerprint, "n_rows": len(rows),
                   "target": child.target, "metadata": str(files[1]), "schema": str(files[2]),
                   "lineage": derived.describe()}
    files += _write_report(output_dir, syn, real, guarantee, output_info, findings, leaks, replaced, metrics,
                           len(train_rows), len(test))
    files.append(_write_card(output_dir, syn, dp, guarantee, info, findings, _public(metrics), ledger_info,
                             output_info, reserved.sbom))
    record = RunRecord(
        recipe="synthetic", run_id=reserved.run_id, seed=s.seed, config_hash=s.config_hash,
        fingerprint=real.fingerprint, source={"key": reserved.source, "name": reserved.source_name,
                                              "kind": real.source.kind},
        dataset=s.dataset.to_dict(), guarantees=[guarantee.to_dict()], audit=dataclasses.asdict(s.audit),
        ledger={"path": ledger_info["path"], "allow_non_private": s.ledger.allow_non_private,
                "default_budget": s.ledger.default_budget, "governance": ledger_info.get("governance")},
        outputs={"rows": Path(files[0]).name, "target": child.target})
    files.append(write_text(output_dir / "config.yaml", s.config_yaml))
    files.append(record.write(output_dir))
    files.append(write_json(output_dir / "metrics.json", {
        "recipe": "synthetic", "synthesizer": syn.model, "metrics": _public(metrics),
        "non_dp_releases": [k for k in ("quality", "privacy", "utility") if k in _public(metrics)],
        "guarantee": guarantee.to_dict(), "guarantees": [guarantee.to_dict()], "dataset": info,
        "output": output_info, "pii": [f.to_dict() for f in findings], "ledger": ledger_info,
        "dp": dataclasses.asdict(dp) if dp else None,
    }))
    result = RunResult("synthetic", output_dir, _public(metrics), [guarantee], info, ledger_info)
    result.dataset["output"] = output_info
    return Outcome(result, {UNIT: p.events}, files, epsilon={UNIT: p.epsilon}, derived=derived)


# --- settings ------------------------------------------------------------------------------


def _check_settings(s: SynthSettings) -> None:
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


def _reviewed_metadata(s: SynthSettings, source: RealTable):
    if not s.metadata:
        return None
    from privtrain.synthetic import metadata

    return metadata.load(s.metadata, source.frame, source_mod.table_name(source.name))


# --- fitting -------------------------------------------------------------------------------


def _fit_sdv(s: SynthSettings, source: RealTable, train: pd.DataFrame, table: str, reviewed, num_rows: int, seed: int):
    from privtrain.synthetic import metadata, pii, sdv_models

    # Detected on the whole table, so the saved metadata.json validates against this dataset for any split seed.
    meta = reviewed if reviewed is not None else metadata.detect(source.frame, table)
    skip = {source.target} if source.target in train.columns else set()
    meta, findings = metadata.mark_pii(meta, train, table, check=s.pii_check, skip=skip)
    synthesizer = sdv_models.build(s.model, meta, params=s.params, common=s.common)
    rows = sdv_models.fit_sample(synthesizer, train, table, num_rows=num_rows, seed=seed)
    # Collisions with ANY real row (held-out rows are real people too) are replaced.
    rows, replaced = pii.scrub_collisions(source.frame, rows, findings, seed=seed,
                                          locales=s.common.get("locales") or ["en_US"])
    return rows, meta, findings, replaced, metadata.saved_dict(meta, findings)


def _guarantee(dp, delta, events, lineage, findings, notes) -> Guarantee:
    notes = list(notes)
    if findings:
        notes.append("PII columns, regenerated by SDV and never copied: "
                     + ", ".join(f"{f.column} ({f.sdtype}, {f.source})" for f in findings))
    if lineage is not None:
        notes.append(f"synthesized from derived data: toward {lineage.parent_name}'s real rows these rows inherit "
                     "its guarantee (post-processing)")
        return Guarantee(lineage.epsilon, lineage.delta, lineage.unit, "lineage", tuple(lineage.events), tuple(notes))
    if dp is None:
        if not any("reproducible_noise" in n for n in notes):
            notes.append("an SDV synthesizer fits the real rows without noise: these rows are not differentially "
                         "private")
        return Guarantee(math.inf, delta, UNIT, "none", tuple(events), tuple(notes))
    return Guarantee(dp.epsilon, dp.delta, UNIT, "pld", tuple(events), tuple(notes))


# --- artifacts --------------------------------------------------------------------------------


def _write_outputs(out: Path, s: SynthSettings, rows, saved_meta, source: RealTable, domain, findings, guarantee, run_id,
                   held_out_ref: dict):
    from privtrain.synthetic import metadata, output

    rows_path = output.write_rows(rows, out, s.fmt)
    meta_path = metadata.save(saved_meta, out / "metadata.json",
                              bounds="declared" if domain is not None else metadata.saved_origin(s.metadata))
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
        "epsilon": "inf" if math.isinf(guarantee.epsilon) else guarantee.epsilon, "delta": guarantee.delta,
        # Where the parent's real held-out rows are (public config): models trained on these rows are scored there.
        "held_out": held_out_ref})
    child = data.load(data.DatasetSpec(loader="synthetic", path=str(rows_path), target=target))
    return [rows_path, meta_path, schema_file], child


def _evaluate(s: SynthSettings, train, test, rows, meta, table, source: RealTable, findings, seed: int) -> dict:
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


INTENDED_USE = (
    "Synthetic rows from privtrain's `synthetic` recipe, for sharing, testing and prototyping in place of the real "
    "table. Check the guarantee below, and report.md's scores (for the data owner only), before releasing them."
)
DP_NOT_COVERED = (
    "The declared public domain (columns, bounds, categories) is public information: it is not protected.",
    "report.md's quality, privacy and utility scores read the real rows without noise: they are for the data "
    "owner, not covered, and must not be released with the rows.",
    "The number of real training rows is treated as public.",
)


def _write_card(out: Path, syn: SynthSettings, dp, guarantee, info: dict, findings, metrics: dict, ledger_info: dict,
                output_info: dict, sbom: dict | None) -> Path:
    from privtrain.artifacts import model_card

    if dp is not None and guarantee.private:
        mechanism = {"kind": "dp_synthesizer", "n_columns": dp.n_columns, "bins": dp.bins,
                     "marginal_noise": dp.marginal_noise, "correlation_noise": dp.correlation_noise,
                     "row_clip": dp.row_clip, "marginal_share": float(syn.params["marginal_share"]),
                     "delta": dp.delta}
    else:
        mechanism = {"kind": "sdv", "model": syn.model}
    pii = {"scanned": True, "findings": [f.to_dict() for f in findings],
           "note": "SDV regenerates these columns (Faker or its id generator); none is copied from the data."
           if findings else None}
    if dp is not None:
        pii = {"note": "The DP synthesizer emits only the columns of its declared domain; any "
               "other column (PII included) is left out."}
    shown = {k: v for k, v in metrics.items() if k in ("quality_score", "tstr_accuracy", "trtr_accuracy",
                                                        "pii_verbatim_values")}
    text = model_card.render(
        recipe="synthetic", intended_use=INTENDED_USE, dataset=info, guarantees=[guarantee], metrics=shown,
        model=f"`{syn.model}` synthesizer; {output_info['n_rows']:,} synthetic rows in "
              f"`{Path(output_info['path']).name}` (fingerprint `{output_info['fingerprint'][:12]}`)",
        ledger=ledger_info, mechanism=mechanism, not_covered=DP_NOT_COVERED if dp is not None else (),
        sbom=sbom, pii={**pii, **info["pii"]} if info.get("pii") else pii,
        metrics_title="Scores (from report.md)", metrics_note="Computed from the real rows without noise: for the "
        "data owner, not covered by the guarantee.")
    return model_card.write(out / "model_card.md", text)


def _write_report(out: Path, s: SynthSettings, source: RealTable, guarantee, output_info, findings, leaks, replaced,
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
