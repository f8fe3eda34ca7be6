"""Text for people: the `ledger show` table, run listings, plans, and exports."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from privtrain.ledger.model import DatasetSummary, Entry, Plan

NO_BUDGET = "no budget: tracked, not enforced"


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


def render_show(summaries: Sequence[DatasetSummary], path: str) -> str:
    if not summaries:
        return f"ledger {path}: empty (no runs, no budgets)"
    header = ("DATASET", "FINGERPRINT", "UNIT", "BUDGET ε", "BUDGET δ", "SPENT ε (PLD)", "RDP ε", "NAIVE Σε",
              "REMAINING ε", "RUNS", "NOTE")
    rows, notes = [], []
    for s in summaries:
        note = "" if s.budget else NO_BUDGET
        if s.lineage is not None:
            note = (note + "; " if note else "") + f"derived: see note {len(notes) + 1}"
            notes.append(f"{len(notes) + 1}. {s.name} ({s.fingerprint[:12]}): {s.lineage.describe()}")
        budget_delta = s.budget.delta if s.budget else None
        rows.append((s.name or "?", s.fingerprint[:12], s.unit, eps(s.budget.epsilon) if s.budget else "-",
                     f"{budget_delta:g}" if budget_delta else "-", eps(s.spent), eps(s.spent_rdp),
                     eps(s.naive_sum), eps(s.remaining) if s.budget else "-", str(s.n_runs), note))
    out = [f"ledger {path}", table(header, rows),
           "spent: tight PLD composition of all charged events at the budget's δ (no budget: the runs' "
           "largest δ); RDP and the naive sum of per-run ε are shown for comparison only."]
    return "\n".join(out + notes)


def render_runs(entries: Sequence[Entry], title: str) -> str:
    header = ("ENTRY", "STATUS", "RUN", "TIME (UTC)", "RECIPE", "UNIT", "ε (run)", "δ", "USER", "CONFIG", "REF")
    rows = [(str(e.id), e.status, e.run_id or "-", e.time[:19], e.recipe or "-", e.unit,
             eps(e.epsilon), f"{e.delta:g}", e.user or "-", (e.config_hash or "-")[:10],
             str(e.ref) if e.ref else "-") for e in entries]
    return f"{title}\n" + (table(header, rows) if rows else "(no entries)")


def render_plan(plan: Plan) -> str:
    c = plan.charge
    lines = [f"privacy plan for run {c.run_id} ({c.recipe}) on {c.dataset_name!r} ({c.dataset_fingerprint[:12]}), "
             f"unit={c.unit}"]
    if plan.lineage is not None:
        lines.append(f"  lineage:      {plan.lineage.describe()}")
    lines.append(f"  this run:     ε={eps(c.epsilon)} at δ={c.delta:g} (its own accountant); "
                 f"PLD ε={eps(plan.planned)} at δ={plan.delta:g}")
    if plan.budget is None:
        lines.append(f"  budget:       none ({NO_BUDGET})")
    else:
        src = " (ledger.default_budget, set on first use)" if plan.budget_is_default else ""
        lines.append(f"  budget:       ε={plan.budget.epsilon:g} at δ={plan.budget.delta:g}{src}")
    lines.append(f"  spent:        ε={eps(plan.spent)} over {plan.n_runs} runs (tight PLD at δ={plan.delta:g})")
    lines.append(f"  after run:    ε={eps(plan.after)}"
                 + (f"  (remaining after: ε={eps(max(0.0, plan.budget.epsilon - plan.after))})"
                    if plan.budget is not None and not math.isinf(plan.after) else ""))
    if plan.budget is not None:
        lines.append(f"  largest ε this run could use: {eps(plan.max_epsilon)} at δ={c.delta:g}")
    if plan.fits:
        lines.append("  verdict:      fits" + ("" if plan.budget else " (not enforced)"))
    else:
        reason = "over budget" if plan.refusal == "over budget" else plan.refusal
        lines.append(f"  verdict:      REFUSED: {reason}")
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
