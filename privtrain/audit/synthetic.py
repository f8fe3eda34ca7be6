"""Audit a ``synthetic`` run: does a real row's distance to the synthetic rows give away its membership?

The attack (distance to closest record, as in SDMetrics' DCR) scores each real row
by how close its nearest synthetic row is: training rows (members) that the
synthesizer memorised sit closer than held-out rows (non-members). Distances are
taken in the public schema's scaled space (the one written next to the rows), with
the target one-hot encoded. SDMetrics' DCR protection scores (from the run's own
report, or computed here) and its CAP disclosure protection are reported beside it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from privtrain.audit.runner import RunInfo, read_metrics
from privtrain.audit.settings import AuditSettings
from privtrain.errors import UserError

REPORT_MD = "report.md"  # a synthetic run's card
KNOWN_COLUMNS = 3  # the CAP attacker knows this many feature columns and guesses the target


def audit_synthetic(run_dir: Path, record, settings: AuditSettings) -> dict:
    """Distance-based membership test and SDMetrics scores; writes audit.json, the ROC and a report section."""
    from privtrain import data
    from privtrain.audit import attacks, report

    # The synthetic recipe's own loader and split, so members and non-members are exactly its train/test rows.
    from privtrain.synthetic.source import load_source, split

    started = time.perf_counter()
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    if settings.shadow_models and settings.shadow_data is not None:
        raise UserError(
            "audit.shadow_models: shadow models are for trained models; a synthetic run is audited "
            "by its distance test alone; pass audit.shadow_models=0."
        )
    written = (metrics.get("output") or {}).get("path") if isinstance(metrics.get("output"), dict) else None
    if not isinstance(written, str):
        raise UserError(
            f"{run_dir}/metrics.json does not name the synthetic rows (output.path); audit an unmodified run directory."
        )
    rows_path = Path(written)
    if not rows_path.is_file():
        rows_path = run_dir / rows_path.name  # the run directory was moved
    if not rows_path.is_file():
        raise UserError(
            f"{run_dir}: the synthetic rows {rows_path.name} are missing; audit an unmodified run directory."
        )
    spec = data.DatasetSpec.from_dict(record.dataset)
    source = load_source(spec, need_target=False)
    if source.fingerprint != metrics["dataset"]["fingerprint"]:
        raise UserError(
            f"{run_dir}: the dataset its config.yaml names has changed since the run "
            "(fingerprints differ); audit with the original data."
        )
    train, test = split(source, seed=record.seed, test_size=spec.test_size)
    child = data.load(
        data.DatasetSpec(
            loader="synthetic", path=str(rows_path), target=metrics["output"].get("target") or source.target
        )
    )
    synth = child.frame
    encode = _encoder(child)
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=1).fit(encode(synth))
    d_in = index.kneighbors(encode(train))[0][:, 0]
    d_out = index.kneighbors(encode(test))[0][:, 0]
    scores = {"distance": (-d_in, -d_out)}
    own = record.own_guarantee
    claimed = math.inf if own["epsilon"] == "inf" else float(own["epsilon"])
    delta = float(own["delta"])
    results = {
        "distance": attacks.attack_metrics(-d_in, -d_out, delta=delta, confidence=settings.confidence, n_attacks=1)
    }

    run = RunInfo(run_dir, record, metrics, claimed, delta, own["unit"])
    audit = report.assemble(
        run,
        settings,
        {"name": source.name, "fingerprint": source.fingerprint},
        results,
        None,
        n_members=len(train),
        n_nonmembers=len(test),
        n_attacks=1,
    )
    audit.update(
        kind="synthetic",
        sdmetrics=_sdmetrics(metrics, train, synth, source),
        distance={
            "median_member": float(np.median(d_in)),
            "median_nonmember": float(np.median(d_out)),
            "exact_copies_of_members": int(np.sum(d_in == 0)),
            "exact_copies_of_nonmembers": int(np.sum(d_out == 0)),
        },
    )
    audit["seconds"] = round(time.perf_counter() - started, 2)
    report.write(run_dir, audit, scores, update_card=settings.update_card, card=REPORT_MD)
    return audit


def _encoder(child):
    """Rows -> the public schema's [0, 1] features plus a one-hot target."""
    schema, target = child.schema, child.target

    def encode(frame):
        x = schema.transform(frame)
        if target and target in frame.columns:
            y = schema.encode_target(frame[target])
            x = np.hstack([x, np.eye(len(schema.classes), dtype=x.dtype)[y]])
        return x

    return encode


def _sdmetrics(metrics: dict, train, synth, source) -> dict:
    """DCR protection (the run's own report when it has one) and CAP disclosure protection of the target."""
    out = dict(metrics.get("metrics", {}).get("privacy") or {})
    target = source.target
    features = [c for c in synth.columns if c != target and c in train.columns]
    if target in synth.columns and features:
        known = features[:KNOWN_COLUMNS]
        numeric = [c for c in [*known, target] if np.issubdtype(train[c].dtype, np.number) and train[c].nunique() > 20]
        try:
            import warnings

            from sdmetrics.single_table import DisclosureProtection

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score = DisclosureProtection.compute(
                    train[[*known, target]],
                    synth[[*known, target]],
                    known_column_names=known,
                    sensitive_column_names=[target],
                    continuous_column_names=numeric or None,
                )
            out.update(
                disclosure_protection=float(score), disclosure_known_columns=known, disclosure_sensitive_column=target
            )
        except Exception as exc:  # SDMetrics rejects some column types; the distance test stands on its own
            out["disclosure_protection_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return out
