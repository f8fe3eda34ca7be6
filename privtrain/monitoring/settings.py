"""``monitor.*``: the DP reference statistics a run releases for drift monitoring (docs/governance/monitoring.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MonitorSettings:
    """Attributes:
    reference: release noisy per-column histograms of the training rows (charged to the ledger).
    epsilon: the ε of that release alone, at the run's δ (the ledger charges its composition with training).
    bins: equal-width bins over a plain numeric column's declared range (declared bins and categories
        are used as declared).
    """

    reference: bool = False
    epsilon: float = 0.5
    bins: int = 10
