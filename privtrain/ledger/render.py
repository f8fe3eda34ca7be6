"""Text for people: the `ledger show` table, run listings, plans, and exports."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from privtrain.ledger.model import Entry, Plan, SourceSummary

NO_BUDGET = "no budget: tracked, not enforced"
FIGURES = (
    "spent (PLD): the tight PLD composition of every charged event at the budget's δ (no budget: the runs' "
    "largest δ), the best estimate of what was spent. filter: what the admission filter (RDP, valid for "
    "adaptively chosen runs) certifies at the budget's δ; runs are admitted while it stays within the "
    "budget, so remaining = budget - filter. The naive sum of per-run ε is for comparison only."
)


def eps(x: float | None) -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.4g}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def source_label(s: SourceSummary) -> str:
    name = s.name or s.source[:12]
    return name if len(s.source) != 64 or name == s.source[:12] else f"{name} ({s.source[:8]})"


def render_show(summaries: Sequence[SourceSummary], path: str) -> str:
    if not summaries:
        return f"ledger {path}: empty (no runs, no budgets)"
    header = ("SOURCE", "UNIT", "BUDGET ε", "δ", "SPENT ε (PLD)", "FILTER ε", "REMAINING ε", "NAIVE Σε", "RUNS", "NOTE")
    rows = []
    notes: list[str] = []
    for s in summaries:
        note = "" if s.budget else NO_BUDGET
        if s.lineage is not None:
            note = (note + "; " if note else "") + f"derived: see note {len(notes) + 1}"
            notes.append(f"{len(notes) + 1}. {source_label(s)}: {s.lineage.describe()}")
        label = source_label(s) if not s.scope else f"  └ population {s.scope_label or s.scope[:12]} [{s.scope[:8]}]"
        rows.append(
            (
                label,
                s.unit,
                eps(s.budget.epsilon) if s.budget else "-",
                f"{s.budget.delta:g}" if s.budget else "-",
                eps(s.spent),
                eps(s.filter_epsilon),
                eps(s.remaining),
                eps(s.naive_sum),
                str(s.n_runs),
                note,
            )
        )
    return "\n".join([f"ledger {path}", table(header, rows), FIGURES, *notes])


def render_runs(entries: Sequence[Entry], title: str) -> str:
    header = ("ENTRY", "STATUS", "RUN", "TIME (UTC)", "RECIPE", "UNIT", "SCOPE", "ε (run)", "δ", "USER", "REF", "NOTE")
    rows = []
    for e in entries:
        detail = e.detail
        note = detail.get("link") or ("forced below spend" if detail.get("forced") else "")
        if e.status == "rows":
            note = f"{detail.get('n_rows')} rows registered ({detail.get('new_rows')} new)"
        elif e.status == "approval":
            note = f"approved by {detail.get('approver')} ({detail.get('identity')})"
        elif e.status == "registry":
            note = f"{detail.get('action')}: {detail.get('name')} version {detail.get('version')}"
        rows.append(
            (
                str(e.id),
                e.status,
                e.run_id or "-",
                e.time[:19],
                e.recipe or "-",
                e.unit,
                (e.scope_label or e.scope[:8]) if e.scope else "-",
                eps(e.epsilon),
                f"{e.delta:g}",
                e.user or "-",
                str(e.ref) if e.ref else "-",
                note,
            )
        )
    return f"{title}\n" + (table(header, rows) if rows else "(no entries)")


def render_stale(reservations, path: str) -> str:
    """`ledger runs --stale`: open reservations, where they ran, and whether their process is gone."""
    if not reservations:
        return f"ledger {path}: no open reservation"
    header = ("ENTRY", "RUN", "TIME (UTC)", "SOURCE", "UNIT", "ε (reserved)", "HOST", "PID", "STATE")
    rows = []
    for r in reservations:
        e, where = r.entry, r.entry.detail.get("process", {})
        rows.append(
            (
                str(e.id),
                e.run_id or "-",
                e.time[:19],
                e.source_name or e.source[:12],
                e.unit,
                eps(e.epsilon),
                where.get("host", "?"),
                str(where.get("pid", "?")),
                r.state,
            )
        )
    return (
        f"ledger {path}\n" + table(header, rows) + "\nEach stays charged at its reservation. Close the stale ones "
        "as failed (still charged) with: privtrain ledger reconcile"
    )


def render_plan(plan: Plan) -> str:
    c = plan.charge
    lines = [f"privacy plan for run {c.run_id} ({c.recipe}): {c.describe()}"]
    if c.link:
        lines.append(f"  linked:       {c.link}: charged to this source")
    if plan.lineage is not None:
        lines.append(f"  lineage:      {plan.lineage.describe()}")
    lines.append(
        f"  this run:     ε={eps(c.epsilon)} at δ={c.delta:g} (its own accountant); "
        f"PLD ε={eps(plan.planned)} at δ={plan.delta:g}"
    )
    if plan.budget is None:
        lines.append(f"  budget:       none ({NO_BUDGET})")
    else:
        src = " (ledger.default_budget, set on first use)" if plan.budget_is_default else ""
        lines.append(f"  budget:       ε={plan.budget.epsilon:g} at δ={plan.budget.delta:g}{src}")
    lines.append(
        f"  spent:        ε={eps(plan.spent)} over {plan.n_runs} runs (tight PLD estimate at δ={plan.delta:g})"
    )
    lines.append(f"  after run:    ε={eps(plan.after)} (PLD estimate)")
    if plan.budget is not None:
        lines.append(
            f"  filter:       ε={eps(plan.filter_before)} -> {eps(plan.filter_after)} certified by the "
            f"admission filter (RDP, adaptive); remaining after: ε={eps(plan.remaining_after)}"
        )
        lines.append(f"  largest ε this run could use: {eps(plan.max_epsilon)} at δ={c.delta:g}")
    if plan.fits:
        lines.append("  verdict:      fits" + ("" if plan.budget else " (not enforced)"))
    else:
        lines.append(f"  verdict:      REFUSED: {plan.refusal}")
    return "\n".join(lines)


def export_json(entries: Sequence[Entry]) -> str:
    return json.dumps([e.to_dict() for e in entries], indent=2, allow_nan=True) + "\n"


def export_csv(entries: Sequence[Entry]) -> str:
    buf = io.StringIO()
    fields = [f for f in Entry.__dataclass_fields__]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for e in entries:
        writer.writerow({f: getattr(e, f) for f in fields})
    return buf.getvalue()
