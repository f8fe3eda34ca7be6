"""Reports on synthetic rows: quality and diagnostic (SDV), DCR protection (SDMetrics), utility.

Everything here compares the synthetic rows with *real* rows, so the report is for the data
owner: its numbers are not covered by the synthesizer's guarantee (the rows are; the report
is not). ``report.md`` says so.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, metadata) -> dict:
    """SDV's QualityReport (column shapes, column-pair trends) and DiagnosticReport."""
    from sdv.evaluation import evaluate_quality, run_diagnostic

    report = _quiet(evaluate_quality, real, synthetic, metadata, verbose=False)
    diag = _quiet(run_diagnostic, real, synthetic, metadata, verbose=False)
    props = dict(zip(report.get_properties()["Property"], report.get_properties()["Score"]))
    dprops = dict(zip(diag.get_properties()["Property"], diag.get_properties()["Score"]))
    shapes = report.get_details("Column Shapes")
    pairs = report.get_details("Column Pair Trends")
    return {
        "quality_score": float(report.get_score()),
        "column_shapes": float(props.get("Column Shapes", math.nan)),
        "column_pair_trends": float(props.get("Column Pair Trends", math.nan)),
        "diagnostic_score": float(diag.get_score()),
        "diagnostic": {k: float(v) for k, v in dprops.items() if pd.notna(v)},  # NaN: not applicable
        "_shapes": shapes,
        "_pairs": pairs,
    }


def dcr(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    real_holdout: pd.DataFrame | None,
    metadata,
    table: str,
    *,
    seed: int,
) -> dict:
    """SDMetrics' DCR-based protection scores (1 = best protection).

    ``DCRBaselineProtection``: median distance from a synthetic row to its closest real row,
    relative to that of uniformly random rows. ``DCROverfittingProtection``: whether synthetic
    rows are closer to the training rows than to the held-out ones; the training rows are
    subsampled to the held-out size so both reference sets are equally dense.
    """
    from sdmetrics.single_table import DCRBaselineProtection, DCROverfittingProtection

    md = metadata.to_dict()
    np.random.seed(seed)  # SDMetrics subsamples with pandas' global RNG
    base = _quiet(DCRBaselineProtection.compute_breakdown, real_train, synthetic, md, table)
    out = {
        "dcr_baseline_protection": float(base["score"]),
        "median_dcr_synthetic": float(base["median_DCR_to_real_data"]["synthetic_data"]),
        "median_dcr_random": float(base["median_DCR_to_real_data"]["random_data_baseline"]),
    }
    if real_holdout is not None and len(real_holdout) >= 5:
        n = min(len(real_holdout), len(synthetic), len(real_train))
        over = _quiet(
            DCROverfittingProtection.compute_breakdown,
            real_train,
            synthetic,
            real_holdout,
            md,
            table,
            num_rows_subsample=n,
            num_iterations=3,
        )
        out.update(
            dcr_overfitting_protection=float(over["score"]),
            closer_to_training=float(over["synthetic_data_percentages"]["closer_to_training"]),
        )
    return out


def plots(out: Path, q: dict) -> list[Path]:
    """Two PNGs: per-column shape scores, and real vs synthetic pairwise correlations."""
    from privtrain.figures import figure

    files = []
    shapes = q["_shapes"]
    if len(shapes):
        fig, ax = figure(figsize=(7, max(2.5, 0.22 * len(shapes))))
        ax.barh(shapes["Column"].astype(str), shapes["Score"], color="#4c72b0")
        ax.set_xlim(0, 1)
        ax.set_xlabel("Column Shapes score (1 = same distribution)")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        files.append(out / "quality_column_shapes.png")
        fig.savefig(files[-1], dpi=110)
    pairs = q["_pairs"]
    if len(pairs) and {"Real Correlation", "Synthetic Correlation"} <= set(pairs.columns):
        p = pairs.dropna(subset=["Real Correlation", "Synthetic Correlation"])
        fig, ax = figure(figsize=(4.5, 4.5))
        ax.scatter(p["Real Correlation"], p["Synthetic Correlation"], s=8, alpha=0.6)
        ax.plot([-1, 1], [-1, 1], color="grey", lw=1)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_xlabel("real correlation")
        ax.set_ylabel("synthetic correlation")
        ax.set_title(f"Column Pair Trends ({len(p)} numeric pairs)")
        fig.tight_layout()
        files.append(out / "quality_pair_trends.png")
        fig.savefig(files[-1], dpi=110)
    return files


def _f(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else "inf" if math.isinf(x) else f"{x:.3f}"
    return str(x)


NON_DP_RELEASE = (
    "Non-DP release: every score in this report reads the real rows (the synthesizer's training split "
    "and the held-out split) without noise. It reveals facts about those rows that no guarantee covers: "
    "it is for the data owner, and must not be released with the synthetic rows."
)


def render(
    *,
    title: str,
    guarantee: str,
    rows: dict,
    files: list[str],
    findings: list[dict],
    leaks: dict,
    replaced: dict,
    q: dict | None,
    privacy: dict | None,
    utility: dict | None,
    notes: list[str],
    pngs: list[Path],
    pii_note: str | None = None,
) -> str:
    """Markdown of ``report.md`` from plain values."""
    lines = [f"# {title}", "", f"**Guarantee of the synthetic rows:** {guarantee}", ""]
    if q is not None or privacy is not None or utility is not None:
        lines += [f"> **{NON_DP_RELEASE}**", ""]
    lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in rows.items()]
    lines += [f"- file: `{f}`" for f in files]
    lines += ["", "## PII", ""]
    if findings:
        lines += ["| column | sdtype | found by | why |", "|---|---|---|---|"]
        lines += [f"| `{f['column']}` | {f['sdtype']} | {f['source']} | {f['reason']} |" for f in findings]
        lines += ["", "SDV regenerates these columns (Faker or its id generator); none is copied from the data."]
        lines.append(
            f"Verbatim real values in the output's PII columns: {sum(leaks.values())}"
            + (f" (after replacing {sum(replaced.values())} chance collisions)" if replaced else "")
            + "."
        )
    else:
        lines.append(pii_note or "No PII column found by SDV's or privtrain's checks.")
    if q is not None:
        lines += [
            "",
            "## Quality (SDV QualityReport and DiagnosticReport)",
            "",
            "| property | score |",
            "|---|---|",
            f"| overall quality | {_f(q['quality_score'])} |",
            f"| Column Shapes | {_f(q['column_shapes'])} |",
            f"| Column Pair Trends | {_f(q['column_pair_trends'])} |",
            f"| diagnostic (overall) | {_f(q['diagnostic_score'])} |",
        ]
        lines += [f"| diagnostic: {k} | {_f(v)} |" for k, v in q["diagnostic"].items()]
        if math.isnan(q["column_pair_trends"]):
            lines += [
                "",
                "Column Pair Trends is n/a: no column pair of the real rows is associated strongly enough "
                "for SDMetrics to score it (the overall score is then Column Shapes alone).",
            ]
        shapes = q["_shapes"]
        if len(shapes):
            worst = shapes.sort_values("Score").head(5)
            lines += [
                "",
                "Lowest column-shape scores: "
                + ", ".join(f"`{c}` {s:.2f}" for c, s in zip(worst["Column"], worst["Score"])),
            ]
        lines += [""] + [f"![{p.stem}]({p.name})" for p in pngs]
    if privacy is not None:
        lines += [
            "",
            "## Privacy (SDMetrics, distance to closest record)",
            "",
            "| metric | value |",
            "|---|---|",
            f"| DCRBaselineProtection (1 = as far from real rows as random rows) | "
            f"{_f(privacy['dcr_baseline_protection'])} |",
            f"| median DCR: synthetic → real | {_f(privacy['median_dcr_synthetic'])} |",
            f"| median DCR: random → real | {_f(privacy['median_dcr_random'])} |",
        ]
        if "dcr_overfitting_protection" in privacy:
            lines += [
                f"| DCROverfittingProtection (1 = no closer to training than to held-out rows) | "
                f"{_f(privacy['dcr_overfitting_protection'])} |",
                f"| share of synthetic rows closer to training than held-out | {_f(privacy['closer_to_training'])} |",
            ]
        lines += [
            "",
            "DCR scores are empirical: they do not bound what the rows reveal. Only a DP synthesizer "
            "gives a guarantee.",
        ]
    if utility is not None and "tstr_accuracy" in utility:
        lines += [
            "",
            f"## Utility (classifier: {utility['classifier']}, tested on {utility['n_test']} real held-out rows)",
            "",
            "| | accuracy | macro F1 |",
            "|---|---|---|",
            f"| TRTR (train on real) | {_f(utility['trtr_accuracy'])} | {_f(utility['trtr_f1_macro'])} |",
            f"| TSTR (train on synthetic) | {_f(utility['tstr_accuracy'])} | {_f(utility['tstr_f1_macro'])} |",
        ]
    lines += [
        "",
        "## What this report is",
        "",
        "- The scores above compare the synthetic rows with real rows (the synthesizer's training split and "
        "the held-out split). They are for the data owner: the report itself is not covered by the guarantee, "
        "and should not be released with the synthetic rows.",
        "- The held-out split was never shown to the synthesizer.",
    ]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def public_numbers(q: dict | None) -> dict | None:
    """The quality numbers without the detail frames (for metrics.json)."""
    return None if q is None else {k: v for k, v in q.items() if not k.startswith("_")}
