"""``privtrain monitor RUN_DIR rows.csv``: drift of new rows (and of the model's predictions on them) against
the run's DP reference statistics.

Exit status: 0 no alert (warnings are printed, not paged), 1 at least one alert (a scheduler can page on
it), 2 bad input (one line; nothing is written). The report goes to ``--out``, by default
``RUN_DIR/monitoring/<UTC time>/``: ``drift_report.json``, ``drift_report.md`` and ``drift.png``. These are the
monitor's own outputs, not the run's evidence: the ledger chains none of them and ``privtrain verify``
ignores them (the run's chained files are never touched).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from privtrain.errors import UserError, user_paths

REPORT = "drift_report"


def monitor(
    run_dir: str | Path,
    rows_path: str | Path,
    *,
    warn: float | None = None,
    alert: float | None = None,
    out: str | Path | None = None,
    ledger_path: str | None = None,
    policy_path: str | None = None,
) -> dict:
    """Compare ``rows_path`` with the run's reference statistics and write the report.

    Returns:
        The report (``drift_report.json``); ``report["alert"]`` is True when any PSI passed the alert threshold.

    Raises:
        UserError: not a monitored run, a reference file that is not the one the ledger charged, a rows file that
            cannot be read or lacks a feature column, or thresholds looser than the policy's.
    """
    import numpy as np

    from privtrain import inference, policy
    from privtrain.artifacts.record import RunRecord
    from privtrain.artifacts.run_dir import sha256_file
    from privtrain.artifacts.verify import recorded_hashes
    from privtrain.data.encode import out_of_range
    from privtrain.data.schema import Schema
    from privtrain.monitoring import drift, reference
    from privtrain.monitoring.bins import schema_bins

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"monitor: run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    record = RunRecord.read(run_dir)
    doc = reference.read(run_dir)
    run_id, hashes, ledger = recorded_hashes(run_dir, ledger_path)
    if hashes.get(reference.FILE) != sha256_file(run_dir / reference.FILE):
        raise UserError(
            f"monitor: {run_dir / reference.FILE} does not match the hash in the ledger {ledger}: it was "
            "edited or replaced; restore the run's own file (privtrain verify shows what changed)."
        )
    warn_v, alert_v, origin = drift.thresholds(_policy(policy_path, ledger, policy), warn, alert)
    rows = _rows(rows_path)
    if record.schema is None:
        raise UserError(
            f"monitor: {run_dir / 'run.json'} records no schema, so new rows cannot be binned; monitor a run "
            "trained on a table with monitor.reference=true."
        )
    schema = Schema.from_dict(record.schema)
    missing = [c.name for c in schema.features if c.name not in rows.columns]
    if missing:
        raise UserError(
            f"monitor: {rows_path} lacks column(s) {missing[:5]} the run was trained on; pass rows with "
            "every feature column."
        )
    sd, found = float(doc["mechanism"]["noise_sd"]), []
    for bins, ref in zip(schema_bins(schema, int(doc["mechanism"]["numeric_bins"])), doc["features"]):
        if list(bins.labels) != ref["bins"]:
            raise UserError(
                f"monitor: {reference.FILE} of {run_dir} does not match the run's schema; restore the file."
            )
        found.append(
            drift.compare(
                ref["name"],
                ref["bins"],
                ref["counts"],
                bins.counts(rows[bins.column.name]),
                sd,
                warn=warn_v,
                alert=alert_v,
            )
        )
    model = inference.load(run_dir, ledger_path=ledger_path)
    import warnings

    with warnings.catch_warnings():  # out-of-range values are counted in the report instead
        warnings.simplefilter("ignore", UserWarning)
        predicted = model.predict_proba(rows).argmax(1)
    label, reference_predictions = doc["label"], doc["predictions"]
    found.append(
        drift.compare(
            drift.PREDICTED,
            reference_predictions["bins"],
            reference_predictions["counts"],
            np.bincount(predicted, minlength=len(label["bins"])),
            sd,
            warn=warn_v,
            alert=alert_v,
        )
    )
    if label["name"] in rows.columns:  # observed labels, when the new rows have them
        codes = _label_codes(rows[label["name"]], schema.classes)
        found.append(
            drift.compare(
                f"{label['name']} (observed label)",
                label["bins"],
                label["counts"],
                np.bincount(codes[codes >= 0], minlength=len(label["bins"])),
                sd,
                warn=warn_v,
                alert=alert_v,
            )
        )
    out_dir = Path(out) if out else run_dir / "monitoring" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = {
        "kind": "privtrain.drift_report",
        "run_id": run_id,
        "run_dir": str(run_dir),
        "rows": str(rows_path),
        "n_rows": len(rows),
        "thresholds": {"psi_warn": warn_v, "psi_alert": alert_v, "from": origin},
        "alert": any(d.level == "alert" for d in found),
        "warn": any(d.level == "warn" for d in found),
        "features": [d.to_dict() for d in found],
        "out_of_range": {
            c.name: out_of_range(rows[c.name], *c.bounds)
            for c in schema.features
            if not c.is_categorical and out_of_range(rows[c.name], *c.bounds)
        },
        "guarantee": _guarantee(doc["guarantee"]),
    }
    _write(out_dir, report, found)
    report["out"] = str(out_dir)
    return report


def _guarantee(g: dict) -> dict:
    """The report's guarantee toward the training rows: that of what it reads from the run, the reference
    statistics and (through its predictions) the model, i.e. the run's charged composition; null when void."""
    return {
        "epsilon": g.get("run_epsilon") if g.get("epsilon") is not None else None,
        "delta": g["delta"],
        "unit": g["unit"],
        "reference_epsilon": g.get("epsilon"),
        "note": "the new rows are the monitor's own data; toward the training rows this report is post-processing "
        "of the run's DP reference statistics and of its model's predictions, so its guarantee is that of "
        "both, the composition the ledger charged the run (the references alone: reference_epsilon)",
    }


def _policy(explicit: str | None, ledger: str, policy_mod):
    path = policy_mod.find(explicit, ledger)
    return policy_mod.load(path) if path is not None else None


def _rows(path):
    from privtrain.data.files import read_table

    kind = "parquet" if str(path).endswith(".parquet") else "csv"
    try:
        return read_table(str(path), kind)
    except UserError as exc:  # read_table speaks of dataset.path; here it is the monitor's rows
        raise UserError(str(exc).replace("dataset.path", "monitor ROWS")) from None


def _label_codes(values, classes):
    from privtrain.data.encode import category_codes

    return category_codes(values, tuple(classes), "the label column")


def markdown(report: dict) -> str:
    """The report as a Markdown table, worst first."""
    t = report["thresholds"]
    g = report["guarantee"]
    eps = (
        "void (no guarantee)"
        if g["epsilon"] is None
        else f"ε = {g['epsilon']:.3g}, δ = {g['delta']:.3g} (the references alone: ε = {g['reference_epsilon']:g})"
    )
    lines = [
        f"# Drift report: run {report['run_id']}",
        "",
        (
            f"{report['n_rows']} rows from `{report['rows']}` against the run's DP reference statistics. "
            f"PSI thresholds: warn > {t['psi_warn']:g}, alert > {t['psi_alert']:g} ({t['from']})."
        ),
        "",
        "| Feature | PSI | Expected without drift | Level |",
        "|---|---|---|---|",
    ]
    for f in sorted(report["features"], key=lambda f: -f["psi"]):
        lines.append(
            f"| {f['name']} | {f['psi']:.4f} | {f['expected_without_drift']:.4f} | "
            f"{f['level'].upper() if f['level'] != 'ok' else 'ok'} |"
        )
    if report["out_of_range"]:
        lines += [
            "",
            "Values outside the declared bounds (clipped, as at training): "
            + ", ".join(f"{k} ({v})" for k, v in report["out_of_range"].items())
            + ".",
        ]
    lines += [
        "",
        f"Verdict: **{'ALERT' if report['alert'] else 'warn' if report['warn'] else 'ok'}**.",
        f"Guarantee (toward the training rows): {eps}, per example; " + g["note"] + ".",
    ]
    return "\n".join(lines) + "\n"


def _write(out_dir: Path, report: dict, found) -> None:
    with user_paths(f"monitor --out {out_dir}"):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{REPORT}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / f"{REPORT}.md").write_text(markdown(report))
        _chart(out_dir / "drift.png", found, report["thresholds"])


def _chart(path: Path, found, t: dict) -> None:
    from privtrain.figures import figure

    fig, ax = figure((max(4.0, 0.6 * len(found) + 2), 3.2), dpi=110)
    colors = {"ok": "#4c9f70", "warn": "#e0a030", "alert": "#c0392b"}
    ax.bar(range(len(found)), [d.psi for d in found], color=[colors[d.level] for d in found])
    ax.axhline(t["psi_warn"], color=colors["warn"], ls="--", lw=1, label=f"warn {t['psi_warn']:g}")
    ax.axhline(t["psi_alert"], color=colors["alert"], ls="--", lw=1, label=f"alert {t['psi_alert']:g}")
    ax.set_xticks(range(len(found)), [d.name for d in found], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("PSI")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def _cmd(args: argparse.Namespace) -> int:
    report = monitor(
        args.run_dir,
        args.rows,
        warn=args.warn,
        alert=args.threshold,
        out=args.out,
        ledger_path=args.ledger,
        policy_path=args.policy,
    )
    print(markdown(report), end="")
    print(f"wrote {REPORT}.json, {REPORT}.md and drift.png to {report['out']}", file=sys.stderr)
    return 1 if report["alert"] else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "monitor",
        help="drift of new rows against a run's DP reference statistics (exit 1 on an alert)",
        description="Compare new rows, and the model's predictions on them, with the DP reference statistics a "
        "dp_sgd run released (monitor.reference=true): PSI per feature against the policy's thresholds. Exit 0: no "
        "alert; 1: an alert (page someone); 2: bad input.",
    )
    p.add_argument("run_dir", help="output directory of a dp_sgd run trained with monitor.reference=true")
    p.add_argument("rows", help="CSV or Parquet file of new rows with the training features")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="PSI",
        help="alert above this PSI (default: the policy's monitoring.psi_alert, else 0.25; only tighter)",
    )
    p.add_argument(
        "--warn",
        type=float,
        default=None,
        metavar="PSI",
        help="warn above this PSI (default: the policy's monitoring.psi_warn, else 0.1; only tighter)",
    )
    p.add_argument(
        "--out", default=None, metavar="DIR", help="where to write the report (default RUN_DIR/monitoring/TIME)"
    )
    p.add_argument("--ledger", default=None, metavar="PATH", help="the run's ledger (default: the one it used)")
    p.add_argument(
        "--policy", default=None, metavar="PATH", help="the policy (default: the project's, beside the ledger)"
    )
    p.set_defaults(func=_cmd)
