"""How many rows a source is known to hold, for the rule every δ obeys: δ < 1/n.

A δ of 1/n or more admits a mechanism that publishes one of n rows outright, so a run's δ must stay below
1/n for its training rows. A budget's δ obeys the same rule against the source's rows where they are known:
a built-in dataset's published size, the rows registered under the source (its chained ``rows`` entries),
or, when a default budget is first applied by a run, that run's own table (a lower bound on the source).
"""

from __future__ import annotations

BUILTIN_ROWS = {"digits": 1797, "breast_cancer": 569, "wine": 178}  # scikit-learn's published sizes


def registered_rows(core, source: str) -> int | None:
    """The rows the ledger's ``rows`` entries say are registered under the source key ``source`` (None: none;
    also for a name not yet in the ledger)."""
    import json

    counts = [json.loads(r["detail"]).get("rows") for r in core.backend.entries(source=source, statuses=("rows",))]
    counts = [int(c) for c in counts if isinstance(c, (int, float))]
    return max(counts) if counts else None


def known_rows(*counts: int | None, source: str | None = None) -> int | None:
    """The largest of the counts known for a source (its built-in size included); None if none is."""
    known = [int(c) for c in (*counts, BUILTIN_ROWS.get(source or "")) if c]
    return max(known) if known else None
