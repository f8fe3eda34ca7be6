"""The model card's sentences: the guarantee, the mechanism, the ledger's view and the PII findings, in words.

Every function takes plain values and returns text; :mod:`privtrain.artifacts.model_card` puts them
into its template. Numbers: ε to 3 significant digits, δ in scientific notation (``1e-05``), rates
to 3 significant digits.
"""

from __future__ import annotations

import math

UNIT_WORDS = {"example": "example (one training row)", "client": "client (all the data of one federated participant)"}


def eps(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str) or not math.isfinite(float(x)):
        return "∞"
    return f"{float(x):#.3g}".rstrip(".")


def delta(x) -> str:
    return "n/a" if x is None else f"{float(x):.2g}"


def num(x) -> str:
    """A setting: integers as they are, floats to 4 significant digits."""
    if isinstance(x, bool) or not isinstance(x, float):
        return str(x)
    return f"{x:.4g}"


def guarantee_sentence(g) -> str:
    """One sentence a reviewer can quote."""
    unit = UNIT_WORDS.get(g.unit, g.unit)
    if not g.private:
        return (
            f"**No differential privacy guarantee (epsilon = infinity)** at the {g.unit} level: this run's "
            "outputs may reveal any training row. Do not present it as private."
        )
    if g.accountant == "lineage":
        return (
            f"**({eps(g.epsilon)}, {delta(g.delta)})-differential privacy per {unit}**, inherited: the model "
            "was trained on synthetic data, and toward the real rows it was synthesized from it keeps the "
            "synthesizer's guarantee (post-processing)."
        )
    factor = f" (about {math.exp(g.epsilon):.3g})" if g.epsilon < 10 else ""
    return (
        f"**({eps(g.epsilon)}, {delta(g.delta)})-differential privacy per {unit}**: adding or removing one "
        f"{g.unit} changes the probability of any outcome of this run by at most a factor e^{eps(g.epsilon)}"
        f"{factor}, except with probability {delta(g.delta)} (computed by the {g.accountant} accountant)."
    )


def mechanism_text(m: dict | None) -> str:
    """The mechanism in prose, from the values the recipe used (``m["kind"]`` says which)."""
    if not m or m.get("kind") == "none":
        what = (m or {}).get("what", "the model")
        return f"No DP mechanism: {what} was trained without differential privacy (no clipping, no noise)."
    k = m["kind"]
    if k == "dp_sgd":
        return (
            f"DP-SGD with Opacus. Each step draws a Poisson sample of the training rows (sampling rate "
            f"{num(m['sample_rate'])}, expected batch size {num(m['batch_size'])}), clips each example's "
            f"gradient to L2 norm {num(m['max_grad_norm'])} (the clip norm), and adds Gaussian noise with "
            f"standard deviation {num(m['noise_multiplier'])} × the clip norm (noise multiplier "
            f"{num(m['noise_multiplier'])}) before the {m['optimizer']} update, learning rate {num(m['lr'])}. "
            f"The run took {m['steps']} steps ({m['epochs']} epoch(s)); the {m['accountant']} accountant "
            f"composed them at δ = {delta(m['delta'])}."
            + (
                f" Per-example gradient norms: Opacus' {m['grad_sample_mode']} mode "
                f"({m.get('grad_sample_mode_reason', 'as configured')})."
                if m.get("grad_sample_mode")
                else ""
            )
        )
    if k == "federated_central":
        sampling = (
            f"each round samples each client independently with probability {num(m['sample_rate'])} "
            f"(Poisson; expected cohort {num(m['expected_cohort'])} of {m['clients']} clients)"
            if m["sampling"] == "poisson"
            else f"each round takes a fixed cohort of {num(m['expected_cohort'])} of {m['clients']} clients "
            "(no amplification by sampling is claimed)"
        )
        return (
            f"Central DP-FedAvg with fixed clipping: {sampling}; each client's model update is clipped to L2 "
            f"norm {num(m['clipping_norm'])} (the clip norm, applied on the {m['clipping_side']} side) and the "
            "server adds Gaussian noise with standard deviation "
            f"{num(m['noise_multiplier'])} × the clip norm (noise multiplier {num(m['noise_multiplier'])}) to "
            f"the sum, divided by {num(m['denominator'])}. {m['rounds']} round(s); clients train locally for "
            f"{m['local_epochs']} epoch(s), batch size {m['batch_size']}, {m['optimizer']} learning rate "
            f"{num(m['lr'])}. The PLD accountant composed the rounds at δ = {delta(m['delta'])}, at the client level."
        )
    if k == "federated_local":
        return (
            f"Local DP-SGD inside each client (Opacus): each client clips each example's gradient to L2 norm "
            f"{num(m['max_grad_norm'])} (the clip norm) and adds Gaussian noise with noise multiplier "
            f"{num(m['noise_multiplier'])}; batch size {m['batch_size']}, learning rate {num(m['lr'])}, "
            f"{m['local_epochs']} local epoch(s) per round over {m['rounds']} round(s). Each client keeps one "
            f"{m['accountant']} accountant across rounds; client partitions are disjoint, so the example-level "
            f"ε of the population is the largest client's, at δ = {delta(m['delta'])}."
        )
    if k == "dp_synthesizer":
        return (
            f"DP Gaussian copula over the {m['n_columns']} columns of the declared public domain. Each column's "
            f"histogram ({m['bins']} bins) gets Gaussian noise with standard deviation "
            f"{num(m['marginal_noise'])} on each count; the correlation of the rows' normal scores, each row "
            f"clipped to L2 norm {num(m['row_clip'])} (the clip norm), gets Gaussian noise with standard "
            f"deviation {num(m['correlation_noise'])} × the clip norm squared on each entry. The marginals take "
            f"{num(m['marginal_share'])} of the budget; the PLD accountant composed both at "
            f"δ = {delta(m['delta'])}. Sampling rows from the released model is post-processing."
        )
    if k == "sdv":
        return (
            f"No DP mechanism: SDV's `{m['model']}` synthesizer fits the real rows without noise, so the rows it "
            "generates carry no differential privacy guarantee."
        )
    raise ValueError(f"Expected a known mechanism kind, got {k!r}.")


def ledger_file(path: str | None) -> str:
    """The ledger's file name, never the training machine's path (a database URL: its scheme only)."""
    if not path:
        return "unknown"
    if "://" in path:
        return f"{path.split('://', 1)[0]} database"
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def charge_text(c: dict, *, after: str = "this run") -> str:
    """One budget after this run (or ``after`` something else, e.g. the audit), in words."""
    spent = f"After {after} the source has spent ε = {eps(c.get('spent_after_run'))} (PLD estimate over all its runs)."
    budget = c.get("budget")
    if budget is None:
        return f"{spent} No budget set: the spend is tracked, not enforced."
    remaining = c.get("remaining")
    left = f"ε = {eps(remaining)} remains for later runs" if remaining is not None else "nothing remains"
    return (
        f"{spent} Budget: ε = {eps(budget['epsilon'])} at δ = {delta(budget['delta'])}; the admission filter "
        f"certifies ε = {eps(c.get('filter_after_run'))} spent, so {left}."
    )


def pii_view(pii) -> dict | None:
    """``dataset.pii`` (the PII gate's record) or a list of findings, as the card's PII section."""
    if pii is None:
        return None
    if isinstance(pii, list):
        pii = {"scanned": True, "findings": pii}
    findings = [
        {
            "column": f.get("column"),
            "kind": str(f.get("kind") or f.get("sdtype") or "identifier").replace("_", " "),
            "reason": f.get("reason", ""),
            "status": f.get("status") or "",
        }
        for f in pii.get("findings") or []
    ]
    scanned, note = pii.get("scanned"), pii.get("note")
    if scanned is None and not findings and note:
        summary, note = note, None
    elif scanned is False:
        summary = "The table was not scanned for personal data" + (f": {pii['reason']}." if pii.get("reason") else ".")
    elif findings:
        summary = f"The scan found {len(findings)} column(s) holding personal data:"
    else:
        summary = "The table was scanned by column name and content; no personal data was found."
    return {
        "summary": summary,
        "findings": findings,
        "statuses": any(f["status"] for f in findings),
        "allowed": list(pii.get("allowed") or []),
        "dropped": list(pii.get("dropped") or []),
        "note": note,
    }
