"""The one-run audit's report: ``one_run_audit.json``, ``one_run_audit.md`` and a histogram of in/out scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

JSON = "one_run_audit.json"
MARKDOWN = "one_run_audit.md"
PNG = "one_run_audit_scores.png"
NAMES = {
    "gauss": "white-box Gaussian estimate (Dirac canaries, likelihood-ratio score)",
    "steinke": "white-box counting bound (Steinke et al. 2023)",
    "replay": "white-box replay of the noise from the public seed (GDP from the ROC)",
    "blackbox_steinke": "black-box counting bound (mislabeled canaries, final model)",
    "blackbox_gauss": "black-box Gaussian estimate (mislabeled canaries, final model)",
}
KIND = {
    "gauss": "estimate",
    "steinke": "proof",
    "replay": "estimate",
    "blackbox_steinke": "proof",
    "blackbox_gauss": "estimate",
}


def _eps(x: float) -> str:
    return "∞" if not math.isfinite(x) else f"{x:.3g}"


def write(out_dir: Path, audit: dict, scores: dict) -> list[Path]:
    """Write the JSON, the Markdown report and the score histogram into ``out_dir``; return the files."""
    from privtrain.artifacts.run_dir import write_json, write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    audit["files"] = [JSON, MARKDOWN, PNG]
    files = [
        write_json(out_dir / JSON, audit),
        write_text(out_dir / MARKDOWN, markdown(audit)),
        plot_scores(out_dir / PNG, scores, audit),
    ]
    return files


def summary(audit: dict) -> str:
    """The lines ``privtrain audit --one-run`` prints."""
    claimed = audit["claimed"]
    lines = [
        f"privtrain one-run audit ({audit['mode']}, {audit['canaries']} canaries, "
        f"{audit['confidence']:.0%} confidence over {audit['n_tests']} attacks)",
        f"  claimed      ε = {_eps(claimed['epsilon'])} at δ = {claimed['delta']:.1e} per {claimed['unit']}",
        f"  lower bound  ε ≥ {_eps(audit['epsilon_lower_bound'])} ({audit['best_attack']})",
    ]
    for name, a in audit["attacks"].items():
        lines.append(f"    {name:<17} ε ≥ {_eps(a['epsilon_lower'])}  [{KIND[name]}]")
    if audit.get("structure") is not None:
        s = audit["structure"]
        lines.append(
            f"  structure    {'DIFFERS' if s['flag'] else 'same mechanism'} for {audit['rows'] - 1}, "
            f"{audit['rows']} and {audit['rows'] + 1} rows and the plan"
        )
    lines.append(f"  verdict      {audit['verdict'].upper().replace('_', ' ')}")
    lines.extend(f"    - {r}" for r in audit["reasons"])
    if audit.get("output_dir"):
        lines.append(f"  report       {audit['output_dir']}/{MARKDOWN}")
    return "\n".join(lines)


def markdown(audit: dict) -> str:
    """The report for a reviewer: the claim, the bound, each attack, the structure check, what it means."""
    c, cfg = audit["claimed"], audit["configuration"]
    verdict = {
        "red_flag": "**RED FLAG**: the mechanism does not keep its claim.",
        "consistent": "Consistent: no attack showed more privacy loss than claimed.",
        "no_guarantee": "No guarantee to check: the configuration claims ε = ∞.",
    }[audit["verdict"]]
    out = [
        "# One-run privacy audit",
        "",
        verdict,
        *[f"- {r}" for r in audit["reasons"]],
        "",
        f"Configuration: {cfg['summary']}; config hash `{cfg['config_hash'][:12]}`. The audit retrained it on "
        f"public data ({cfg['rows_from']}); nothing was charged.",
        "",
        f"Claimed: ε = {_eps(c['epsilon'])} at δ = {c['delta']:.1e} per {c['unit']} ({c['accountant']} accountant; "
        f"σ = {c['noise_multiplier']:.4g}, q = {c['sample_rate']:.4g}, {c['steps']} {_steps(c)}, C = {c['max_grad_norm']:g}).",
        "",
        f"**Lower bound: ε ≥ {_eps(audit['epsilon_lower_bound'])}** with {audit['confidence']:.0%} confidence "
        f"({audit['canaries']} canaries, each included with probability 1/2; the largest bound of "
        f"{audit['n_tests']} attacks, each at level {(1 - audit['confidence']) / audit['n_tests']:.3g}).",
        "",
        "| attack | kind | ε lower bound | detail |",
        "|---|---|---|---|",
    ]
    for name, a in audit["attacks"].items():
        out.append(f"| {NAMES[name]} | {KIND[name]} | {_eps(a['epsilon_lower'])} | {_detail(name, a)} |")
    out.append("")
    if audit.get("expected"):
        e = audit["expected"]
        out += [
            f"What a correct implementation should show: μ ≈ {e['clt_mu']:.3g} (ε ≈ {_eps(e['clt_epsilon'])}, "
            f"the central-limit curve of the claimed σ, q and steps); the claim itself reads as "
            f"μ = {e['claimed_gdp_mu']:.3g}.",
            "",
        ]
    if audit.get("structure") is not None:
        s = audit["structure"]
        out += [
            "## Structure: what Opacus was given",
            "",
            "| rows | sampling rate | divisor | steps | noise multiplier | clipping norm |",
            "|---|---|---|---|---|---|",
        ]
        for p in s["probes"]:
            out.append(
                f"| {p['rows']} | {p['sample_rate']:.6g} | {p['divisor']:.6g} | {p['steps']} | "
                f"{p['noise_multiplier']:.6g} | {p['max_grad_norm']:.6g} |"
            )
        out += [
            "",
            f"Varies with the row count: {', '.join(s['varies_with_rows']) or 'nothing'}. "
            f"Differs from the plan: {', '.join(s['differs_from_plan']) or 'nothing'}.",
            "",
        ]
    out += [
        "## Reading it",
        "",
        "A lower bound can show that a mechanism leaks more than it claims; it never shows that a mechanism is "
        "private. *Proof* rows hold for any mechanism at the stated confidence; *estimate* rows assume what a "
        "correct DP-SGD satisfies (independent canaries, a privacy curve close to Gaussian) and are tighter. "
        'See docs/audit.md, section "One-run audit".',
        "",
    ]
    if audit.get("mutant"):
        out += [f"Test build: the injected bug `{audit['mutant']}` was active (PRIVTRAIN_MUTANT).", ""]
    return "\n".join(out)


def _steps(claimed: dict) -> str:
    return "rounds" if claimed["unit"] == "client" else "steps"


def _detail(name: str, a: dict) -> str:
    if name in ("gauss", "blackbox_gauss"):
        lo, hi = a["interval"]
        return f"μ̂ = {a['mu']:.3g} (interval {lo:.3g} to {hi:.3g}), μ ≥ {a['mu_lower']:.3g}"
    if name == "replay":
        return f"{a['steps']} steps replayed; μ ≥ {a['mu_lower']:.3g} (FPR ≤ {a['fpr_upper']:.3g}, FNR ≤ {a['fnr_upper']:.3g})"
    return f"{a['correct']} of {a['guesses_in'] + a['guesses_out']} guesses right ({a['guesses_in']} in, {a['guesses_out']} out)"


def plot_scores(path: Path, scores: dict, audit: dict) -> Path:
    """One histogram per distinct score (in vs out canaries)."""
    from privtrain.figures import figure

    panels = [n for n in ("gauss", "replay", "blackbox_gauss") if n in scores]
    fig, axes = figure(figsize=(4.2 * len(panels), 3.4), ncols=len(panels), squeeze=False)
    titles = {
        "gauss": "white-box: Dirac canaries",
        "replay": "white-box: replay difference",
        "blackbox_gauss": "black-box: mislabeled canaries",
    }
    for ax, name in zip(axes[0], panels):
        inside, outside = (np.asarray(s, dtype=float) for s in scores[name])
        both = np.concatenate([inside, outside])
        lo, hi = np.percentile(both, [0.5, 99.5]) if len(both) else (0, 1)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        ax.hist(np.clip(outside, lo, hi), bins=bins, alpha=0.6, label=f"out ({len(outside)})")
        ax.hist(np.clip(inside, lo, hi), bins=bins, alpha=0.6, label=f"in ({len(inside)})")
        ax.set_title(f"{titles[name]}\nε ≥ {_eps(audit['attacks'][name]['epsilon_lower'])}", fontsize=9)
        ax.set_xlabel("score (higher = included)")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"claimed ε = {_eps(audit['claimed']['epsilon'])}; lower bound {_eps(audit['epsilon_lower_bound'])}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


CARD_MARKERS = ("<!-- privtrain-one-run-audit:start -->", "<!-- privtrain-one-run-audit:end -->")


def card_section(audit: dict) -> str:
    """The model card's paragraph on the configuration's one-run audit, for a reviewer."""
    claimed, lb = audit["claimed"]["epsilon"], audit["epsilon_lower_bound"]
    conf = f"{audit['confidence']:.0%}"
    expected = (audit.get("expected") or {}).get("clt_epsilon")
    verdict = (
        f"consistent with the claimed ε = {_eps(claimed)}"
        if not audit["red_flag"]
        else f"**more than the claimed ε = {_eps(claimed)}: a red flag**"
    )
    lines = [
        CARD_MARKERS[0],
        "## One-run audit of the training mechanism",
        "",
        f"Before this run read its data, privtrain retrained the same configuration on public rows with "
        f"{audit['canaries']} canaries, each included with probability ½, and measured how much a single "
        f"training example shows through the training ({audit['mode']} mode). Lower bound: ε ≥ {_eps(lb)} "
        f"({conf} confidence), {verdict}."
        + (
            f" Before that confidence margin, the canaries of a correct implementation carry about ε = {_eps(expected)}."
            if expected is not None
            else ""
        ),
        "",
        "This checks the implementation (the noise, the clipping, the sampling rate, the divisor, noise that can "
        "be replayed from the seed), not this trained model: a bound can show that a mechanism leaks more than "
        f"claimed, never that it is private. Details: `one_run_audit/{MARKDOWN}`.",
        CARD_MARKERS[1],
    ]
    return "\n".join(lines)


def add_to_card(card: Path, audit: dict) -> None:
    """Put :func:`card_section` into the card at ``card``, before its Provenance section (or at the end)."""
    text = Path(card).read_text()
    section, marker = card_section(audit), "\n## Provenance"
    if marker in text:
        head, tail = text.split(marker, 1)
        text = head.rstrip("\n") + "\n\n" + section + "\n" + marker + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    Path(card).write_text(text)
