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
from typing import TYPE_CHECKING

from privtrain.artifacts import run_files
from privtrain.data.synthetic import held_out_reference
from privtrain.ledger import Access, Mechanism
from privtrain.privacy.dp_sgd import default_delta
from privtrain.privacy.events import DpEvent, non_private_event
from privtrain.privacy.randomness import VOID_NOTE
from privtrain.result import Outcome, Reserved, RunResult
from privtrain.runs import synthetic as parts
from privtrain.runs import synthetic_files as files_of
from privtrain.synthetic import DP_MODELS, quiet_logs
from privtrain.synthetic import source as source_mod
from privtrain.synthetic.source import RealTable

if TYPE_CHECKING:
    from sdv.metadata import Metadata

    from privtrain.config import RunSettings
    from privtrain.data.schema import Column
    from privtrain.synthetic.dp_copula import DpCopulaPlan

UNIT = parts.UNIT


@dataclass(frozen=True)
class Planned:
    settings: RunSettings
    real: RealTable
    domain: list[Column] | None
    notes: list[str]
    dp: DpCopulaPlan | None
    events: tuple[DpEvent, ...]
    delta: float
    epsilon: float
    num_rows: int
    reviewed: Metadata | None
    access: Access
    dataset_info: dict
    void: tuple[str, ...] = ()  # why a DP synthesizer's guarantee is void (ε = ∞)


def plan(s: RunSettings) -> Planned:
    """Load and identify the real table and plan the synthesizer. Reads no row for fitting."""
    quiet_logs()
    syn = s.synth
    assert syn is not None  # the synthetic recipe's group: config.settings always sets it
    parts.check_settings(syn)
    real = source_mod.load_source(s.dataset, need_target=syn.utility, pii_handling=parts.pii_handling(syn))
    n_train = len(source_mod.split(real, seed=s.seed, test_size=s.dataset.test_size)[0])  # public, like n
    num_rows = n_train if syn.num_rows is None else syn.num_rows
    private = syn.model in DP_MODELS
    domain, dp = None, None
    notes: list[str] = []
    if private:
        from privtrain.synthetic import dp_copula

        domain, notes = source_mod.dp_domain(real, syn.model, syn.metadata)
        delta = source_mod.dp_delta(syn.params.get("delta"), n_train)
        dp = dp_copula.plan(
            epsilon=float(syn.params["epsilon"]),
            delta=delta,
            n_columns=len(domain),
            bins=int(syn.params["bins"]),
            marginal_share=float(syn.params["marginal_share"]),
            row_clip=float(syn.params["row_clip"]),
        )
        events, epsilon = tuple(dp.events), dp.epsilon
    else:
        delta, events, epsilon = default_delta(n_train), (non_private_event(),), math.inf
    void = (VOID_NOTE,) if private and s.reproducible_noise else ()
    if void:  # the synthesizer still adds its noise (to debug it), but anyone with the seed can replay it
        events, epsilon = (non_private_event(),), math.inf
    reviewed = parts.reviewed_metadata(syn, real) if not private else None  # a mismatch fails before any charge
    mechanism = Mechanism(UNIT, events, delta, epsilon)
    access = Access(real.source, real.fingerprint, (mechanism,), real.frame, s.dataset.id_column)
    info = {
        "name": real.name,
        "source": real.source.key,
        "fingerprint": real.fingerprint,
        "n_rows": len(real.frame),
        "pii": real.pii,
    }
    return Planned(s, real, domain, notes, dp, events, delta, epsilon, num_rows, reviewed, access, info, void)


def train(p: Planned, reserved: Reserved, output_dir: Path) -> Outcome:
    """Fit, sample, write and report; the budget is already reserved."""
    s, syn, real, dp = p.settings, p.settings.synth, p.real, p.dp
    assert syn is not None
    output_dir, notes = Path(output_dir), list(p.notes)
    train_rows, test = source_mod.split(real, seed=s.seed, test_size=s.dataset.test_size)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = source_mod.table_name(real.name)
    rows, meta, findings, replaced, saved_meta = parts.fit(
        s, p.domain, dp, p.reviewed, real, train_rows, table, p.num_rows, notes
    )
    from privtrain.synthetic import pii

    leaks = pii.verbatim_leaks(real.frame, rows, [f.column for f in findings])  # against every real row
    guarantee = parts.guarantee(
        None if p.void else dp, p.delta, p.events, reserved.lineage, findings, notes + list(p.void)
    )
    files, child = parts.write_outputs(
        output_dir,
        syn,
        rows,
        saved_meta,
        real,
        p.domain,
        findings,
        guarantee,
        reserved.run_id,
        held_out_reference(s.dataset, seed=s.seed),
    )
    derived = parts.derived_lineage(child, reserved, reserved.lineage, p.events, p.epsilon, p.delta)
    registered = (
        f"synthetic rows: {files[0]} (fingerprint {child.fingerprint[:12]}), registered in the ledger as "
        f"derived from source {derived.parent_name}; training on them charges nothing new to it"
    )
    guarantee = dataclasses.replace(guarantee, notes=(*guarantee.notes, registered))
    metrics = parts.evaluate(syn, train_rows, test, rows, meta, table, real, findings, s.seed)
    metrics.update(pii_verbatim_values=sum(leaks.values()), pii_collisions_replaced=sum(replaced.values()))
    ledger_info = reserved.summary()
    info = dict(
        p.dataset_info,
        name=reserved.source_name,
        source=reserved.source,
        n_train=len(train_rows),
        n_test=len(test),
        schema=real.schema.source if real.schema is not None else "sdv-detected",
    )
    output_info = files_of.output_info(files, child, rows, derived)
    files += parts.write_report(
        output_dir, syn, real, guarantee, output_info, findings, leaks, replaced, metrics, len(train_rows), len(test)
    )
    public = parts.public(metrics)
    written = files_of.run_files_of(
        s, reserved, p.access, ledger_info, info, guarantee, public, output_info, findings, dp
    )
    files += run_files.write(output_dir, written)
    result = RunResult("synthetic", output_dir, public, [guarantee], info, ledger_info)
    result.dataset["output"] = output_info
    return Outcome(result, {UNIT: p.events}, files, epsilon={UNIT: p.epsilon}, derived=derived)
