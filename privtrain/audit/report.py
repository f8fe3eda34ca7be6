"""The audit's report: ``audit.json``, a log-log ROC curve, and a section in ``model_card.md``."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from privtrain.audit.bounds import max_provable_epsilon

AUDIT_JSON = "audit.json"
ROC_PNG = "audit_roc.png"
CARD = "model_card.md"
ATTACK_NAMES = {
    "loss": "loss threshold",
    "confidence": "confidence (max probability)",
    "lira": "LiRA (shadow models)",
    "distance": "distance to closest synthetic row",
}
NOT_DP_NOTE = (
    "The audit's figures are computed from the training rows and are not covered by the DP "
    "guarantee; they are aggregates (rates over hundreds of rows), but treat them as the data "
    "owner's information."
)


def _fmt_eps(x: float) -> str:
    return "∞" if not math.isfinite(x) else f"{x:.3g}"


def assemble(
    run,
    settings,
    dataset: dict,
    results: dict,
    shadow: dict | None,
    *,
    n_members: int,
    n_nonmembers: int,
    n_attacks: int,
) -> dict:
    """The audit.json content.

    Args:
        run: a :class:`privtrain.audit.runner.RunInfo` (the claim and where the run lives).
        dataset: ``{"name", "fingerprint"}`` of the audited (real) dataset.
        results: per-attack metrics from :func:`privtrain.audit.attacks.attack_metrics`.
    """
    best = max(results, key=lambda a: (results[a]["epsilon_lower_bound"], results[a]["auc"]))
    eps_lb = results[best]["epsilon_lower_bound"]
    claimed = run.claimed_epsilon
    red_flag = math.isfinite(claimed) and eps_lb > claimed
    return {
        "kind": "model",
        "run_dir": str(run.run_dir),
        "recipe": run.metrics.get("recipe"),
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "dataset": dict(dataset),
        "claimed": {"epsilon": claimed, "delta": run.delta, "unit": run.unit},
        "confidence": settings.confidence,
        "n_members": n_members,
        "n_nonmembers": n_nonmembers,
        "attacks": results,
        "best_attack": best,
        "epsilon_lower_bound": eps_lb,
        "max_provable_epsilon": max_provable_epsilon(
            n_members, n_nonmembers, delta=run.delta, confidence=settings.confidence, n_attacks=n_attacks
        ),
        "red_flag": red_flag,
        "verdict": "red_flag" if red_flag else ("consistent" if math.isfinite(claimed) else "no_guarantee"),
        "shadow": shadow or {"models": 0, "data": None},
        "notes": [NOT_DP_NOTE],
    }


def write(run_dir: Path, audit: dict, scores: dict, *, update_card: bool = True, card: str = CARD) -> list[Path]:
    """Write audit.json, the ROC plot and (optionally) the card's audit section; return the files.

    The card's hash before the audit goes into audit.json: the ledger recorded that one. The section is
    added so that removing it gives back that card exactly (:mod:`privtrain.artifacts.card_sections`).
    """
    from privtrain.artifacts.run_dir import sha256_file, write_json

    files = [plot_roc(run_dir / ROC_PNG, scores, audit)]
    card_file = run_dir / card
    if update_card and card_file.is_file():
        audit["card"] = card_file.name
        audit["card_sha256_before_audit"] = sha256_file(card_file)
        from privtrain.artifacts.model_card import no_paths

        text = update_card_text(
            card_file.read_bytes().decode("utf-8"), no_paths(card_section(audit)), red_flag_banner(audit)
        )
        card_file.write_bytes(text.encode("utf-8"))
        files.append(card_file)
    files.insert(0, write_json(run_dir / AUDIT_JSON, audit))
    return files


def plot_roc(path: Path, scores: dict, audit: dict) -> Path:
    """ROC curves of every attack on log-log axes: what matters is the low-FPR corner."""
    from privtrain.audit.attacks import roc
    from privtrain.figures import figure

    floor = 1.0 / max(2 * audit["n_nonmembers"], 1)
    fig, ax = figure(figsize=(5, 5))
    for name, (members, nonmembers) in scores.items():
        fpr, tpr = roc(np.nan_to_num(members, nan=-np.inf), np.nan_to_num(nonmembers, nan=-np.inf))
        auc = audit["attacks"][name]["auc"]
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=f"{ATTACK_NAMES.get(name, name)} (AUC {auc:.3f})")
    grid = np.logspace(np.log10(floor), 0, 100)
    ax.plot(grid, grid, "k:", label="chance")
    claimed = audit["claimed"]["epsilon"]
    if math.isfinite(claimed) and claimed < 20:
        # The region a claimed (ε, δ)-DP model must stay under: TPR <= e^ε FPR + δ.
        ax.plot(
            grid,
            np.minimum(1.0, math.exp(claimed) * grid + audit["claimed"]["delta"]),
            "r--",
            label=f"limit of claimed ε = {claimed:.3g}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.05)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"Membership inference on {audit['dataset']['name']}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def card_section(audit: dict) -> str:
    """The model card's audit section, in words a reviewer understands."""
    claimed, lb = audit["claimed"]["epsilon"], audit["epsilon_lower_bound"]
    conf = f"{audit['confidence']:.0%}"
    best = audit["attacks"][audit["best_attack"]]
    lines = [
        "## Empirical privacy audit (membership inference)",
        "",
        f"_Audited at {audit['created']}; details in `{AUDIT_JSON}`, ROC curve in `{ROC_PNG}`._",
        "",
    ]
    if audit["red_flag"]:
        lines.append(
            f"**RED FLAG: the audit contradicts the guarantee.** An attack shows ε ≥ {lb:.3g} with "
            f"{conf} confidence, but the model claims ε = {claimed:.3g}. A correct DP implementation "
            "cannot leak this much: look for a DP bug (noise disabled, a preprocessing statistic "
            "computed from the private rows, a wrong accountant). Do not release the model."
        )
    elif math.isfinite(claimed) and lb == 0:
        lines.append(
            f"**Consistent with the guarantee.** No attack found evidence of leakage: the empirical "
            f"lower bound is ε ≥ 0, below the claimed ε = {claimed:.3g}."
        )
    elif math.isfinite(claimed):
        lines.append(
            f"**Consistent with the guarantee.** The strongest attack shows ε ≥ {lb:.3g} "
            f"({conf} confidence), below the claimed ε = {claimed:.3g}."
        )
    else:
        lines.append(
            f"**No guarantee to check: this model was trained without DP.** The attacks measure how "
            f"much it leaks about its training rows: ε ≥ {lb:.3g} ({conf} confidence)."
        )
    lines += [
        "",
        f"- claimed: ε = {_fmt_eps(claimed)}, δ = {audit['claimed']['delta']:.1e}, per {audit['claimed']['unit']}",
        f"- empirical lower bound: ε ≥ {lb:.3g} at the same δ, {conf} confidence (Clopper–Pearson, "
        f"holding for all thresholds and attacks together); strongest attack: "
        f"{ATTACK_NAMES.get(audit['best_attack'], audit['best_attack'])}",
        f"- members attacked: {audit['n_members']} training rows vs {audit['n_nonmembers']} held-out rows; "
        f"with these counts even a perfect attack could show at most ε ≥ {audit['max_provable_epsilon']:.3g}",
        "",
        "| attack | AUC | TPR at 1% FPR | TPR at 0.1% FPR | advantage | ε lower bound |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in audit["attacks"].items():
        lines.append(
            f"| {ATTACK_NAMES.get(name, name)} | {r['auc']:.3f} | {r['tpr_at_0.01_fpr']:.3f} | "
            f"{r['tpr_at_0.001_fpr']:.3f} | {r['advantage']:.3f} | {r['epsilon_lower_bound']:.3g} |"
        )
    released = "these synthetic rows" if audit.get("kind") == "synthetic" else "this model"
    lines += [
        "",
        f"In plain words: an attacker who holds a record and {released} tries to tell whether the "
        f"record was in the training data. AUC 0.5 is a coin flip, 1.0 is always right. The best attack "
        f"has AUC {best['auc']:.3f}; when it may wrongly accuse only 1 in 100 outsiders, it recognises "
        f"{best['tpr_at_0.01_fpr']:.1%} of the training rows. Its advantage over guessing is "
        f"{best['advantage']:.1%} (0% = no better than chance).",
    ]
    lines += [
        "",
        "An audit gives a lower bound: it can show that a model leaks, never that it is private. A bound "
        "below the claim means these attacks found nothing that contradicts it; the guarantee itself "
        "rests on the proof. The bound treats each row's guess as an independent trial, as is usual for "
        "audits of one trained model: strong evidence, not a proof.",
        "",
    ]
    if audit.get("kind") == "synthetic":
        lines.append(f"- SDMetrics (1 = best protection): {_sdm(audit.get('sdmetrics', {}))}")
        d = audit.get("distance", {})
        lines.append(
            f"- median distance to the closest synthetic row: training rows {d.get('median_member', 0):.3g}, "
            f"held-out rows {d.get('median_nonmember', 0):.3g}; synthetic rows that copy a training row "
            f"exactly: {d.get('exact_copies_of_members', 0)}"
        )
    else:
        lines.append(f"- privacy cost of the audit: {_cost(audit['shadow'])}")
    lines.extend(f"- note: {n}" for n in audit["notes"])
    return "\n".join(lines)


def _sdm(scores: dict) -> str:
    keys = ("dcr_baseline_protection", "dcr_overfitting_protection", "disclosure_protection")
    shown = [f"{k.replace('_', ' ')} {scores[k]:.3f}" for k in keys if isinstance(scores.get(k), (int, float))]
    return ", ".join(shown) if shown else "not available"


def _cost(shadow: dict) -> str:
    k = shadow.get("models", 0)
    if not k:
        return "none (no shadow models: only the loss and confidence attacks ran)."
    if shadow.get("data") == "pool":
        return (
            f"none: {k} shadow models ({shadow.get('variant')} LiRA) trained only on the declared audit pool "
            f"`{shadow.get('pool_path')}`."
        )
    text = (
        f"{k} shadow models ({shadow.get('variant')} LiRA) trained on halves of the private dataset; "
        f"charged ε = {_fmt_eps(shadow.get('charged_epsilon', math.inf))} to the ledger as entry "
        f"`{shadow.get('ledger_entry')}` (each row is in {k // 2} shadows)."
    )
    if shadow.get("ledger_after"):
        from privtrain.artifacts.card_text import charge_text

        text += " " + charge_text(shadow["ledger_after"], after="the audit")
    return text


def red_flag_banner(audit: dict) -> str | None:
    if not audit["red_flag"]:
        return None
    return "\n".join(
        [
            f"> **⚠ RED FLAG — PRIVACY AUDIT FAILED.** A membership-inference attack shows ε ≥ "
            f"{audit['epsilon_lower_bound']:.3g} ({audit['confidence']:.0%} confidence), more than the claimed "
            f"ε = {audit['claimed']['epsilon']:.3g}. The guarantee below is not true of this model. Do not release it; "
            'see "Empirical privacy audit".',
        ]
    )


def update_card_text(card: str, section: str, banner: str | None) -> str:
    """Replace any earlier audit section and banner; the banner goes under the title, the section
    before Provenance (or at the end). Removing both gives back ``card`` as its run wrote it."""
    from privtrain.artifacts import card_sections as blocks

    text = blocks.remove(card, blocks.AUDIT_BANNER)
    if banner:
        text = blocks.insert(text, blocks.AUDIT_BANNER, banner, after_title=True)
    return blocks.insert(text, blocks.AUDIT_SECTION, section, before="## Provenance")


def summary(audit: dict) -> str:
    """Lines for the terminal."""
    claimed = audit["claimed"]["epsilon"]
    lines = [
        f"privtrain audit of {audit['run_dir']} ({audit['dataset']['name']}, "
        f"{audit.get('n_members', '?')} members vs {audit.get('n_nonmembers', '?')} non-members)"
    ]
    for name, r in audit["attacks"].items():
        lines.append(
            f"  {name:<11} AUC {r['auc']:.3f}  TPR@1%FPR {r['tpr_at_0.01_fpr']:.3f}  "
            f"TPR@0.1%FPR {r['tpr_at_0.001_fpr']:.3f}  adv {r['advantage']:.3f}  "
            f"eps_lb {r['epsilon_lower_bound']:.3g}"
        )
    lines.append(
        f"  epsilon     claimed {_fmt_eps(claimed)}, empirical lower bound {audit['epsilon_lower_bound']:.3g} "
        f"({audit['confidence']:.0%} confidence; at most {audit['max_provable_epsilon']:.3g} provable here)"
    )
    if audit.get("shadow", {}).get("models"):
        lines.append(f"  shadows     {_cost(audit['shadow'])}")
    lines.append(
        f"  report      {Path(audit['run_dir']) / AUDIT_JSON}, {ROC_PNG}"
        + (f", {audit['card']}" if "card" in audit else "")
    )
    if audit["red_flag"]:
        lines.append(
            "  RED FLAG    the empirical lower bound exceeds the claimed epsilon: a DP bug is likely; "
            "do not release this model"
        )
    return "\n".join(lines)
