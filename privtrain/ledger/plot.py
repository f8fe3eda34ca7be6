"""`ledger plot`: a PNG of one source's budget burning down over its runs."""

from __future__ import annotations

import math
from pathlib import Path

from privtrain.ledger import compose
from privtrain.ledger.model import SourceSummary

PLOT_DISCRETIZATION = 1e-3  # pessimistic, so the curve never understates; the final point is exact
MAX_POINTS = 50


def cumulative_pld(runs: list[compose.RunCharge], delta: float) -> list[tuple[int, float]]:
    """(number of runs, tight ε of their composition) at up to MAX_POINTS evenly spaced run counts."""
    import dp_accounting

    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=PLOT_DISCRETIZATION)
    step = max(1, math.ceil(len(runs) / MAX_POINTS))
    points, infinite = [], False
    for start in range(0, len(runs), step):
        chunk = runs[start : start + step]
        counts = compose.event_counts(r.events_json for r in chunk)
        if any('"NonPrivateDpEvent"' in k for k in counts):
            infinite = True
        if not infinite and counts:
            accountant.compose(dp_accounting.ComposedDpEvent(compose._events(counts)))
        points.append((start + len(chunk), math.inf if infinite else float(accountant.get_epsilon(delta))))
    return points


def plot(summary: SourceSummary, runs: list[compose.RunCharge], output: Path) -> Path:
    """Write the burn-down PNG for ``summary`` and return its path."""
    from privtrain.figures import figure

    delta = summary.delta or 1e-5
    pld = cumulative_pld(runs, delta) if runs else []
    naive, total = [], 0.0
    for i, r in enumerate(runs, 1):
        total += r.epsilon
        naive.append((i, total))
    fig, ax = figure(figsize=(7, 4), dpi=120)
    cap = summary.budget.epsilon * 1.5 if summary.budget else None

    def clip(pts):  # ε = inf (a non-private access) is drawn at the top of the axes
        return [(x, cap) if math.isinf(y) else (x, y) for x, y in pts if cap or not math.isinf(y)]

    if pld:
        ax.plot(*zip(*clip([(0, 0.0)] + pld)), marker="o", ms=3, label=f"spent, tight PLD (δ={delta:g})")
    if naive:
        ax.plot(*zip(*clip([(0, 0.0)] + naive)), ls="--", color="grey", label="naive sum of per-run ε (comparison)")
    if summary.budget and runs:
        from privtrain.ledger import filter as rdp_filter

        spent_rdp, certified = tuple(0.0 for _ in summary.budget.orders), []
        for i, r in enumerate(runs, 1):
            curve = (
                r.rdp
                if r.rdp is not None and summary.budget.orders == rdp_filter.ORDERS
                else rdp_filter.rdp_curve(r.events_json, summary.budget.orders)
            )
            spent_rdp = rdp_filter.add(spent_rdp, curve)
            certified.append(
                (
                    i,
                    rdp_filter.certified_epsilon(
                        spent_rdp, budget_delta=summary.budget.delta, orders=summary.budget.orders
                    ),
                )
            )
        ax.plot(
            *zip(*clip([(0, 0.0)] + certified)), ls="-.", color="darkorange", label="admission filter (RDP, adaptive)"
        )
    if summary.budget:
        ax.axhline(summary.budget.epsilon, color="red", label=f"budget ε={summary.budget.epsilon:g}")
    ax.set_xlabel("runs charged (in ledger order)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("ε")
    title = f"source {summary.name or summary.source[:12]}, unit={summary.unit}"
    if summary.scope:
        title += f", population {summary.scope_label or summary.scope[:12]}"
    if not summary.budget:
        title += " — no budget: tracked, not enforced"
    if math.isinf(summary.spent):
        title += " — ε=inf (non-private access)"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    return output
