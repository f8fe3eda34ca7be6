"""The largest ε a refused (or any) run could still use on a dataset.

The run's mechanism keeps its shape (sampling rate, steps); only its noise is
scaled by a factor k. We bisect on k for the smallest noise whose composition
with what is already spent fits the budget, then report that run's own ε at its
δ. The search uses a coarse PLD discretization: PLD is pessimistic, so a coarser
grid overstates ε, and the answer errs on the safe side.
"""

from __future__ import annotations

import json
import math
from collections import Counter

from privtrain.ledger import compose

SEARCH_DISCRETIZATION = 1e-3
_NOISY = ("GaussianDpEvent", "LaplaceDpEvent")


def _scale(event: dict, k: float) -> tuple[dict, bool]:
    """A copy of a JSON event with every Gaussian/Laplace noise multiplied by ``k``."""
    found = False
    out = {}
    for key, value in event.items():
        if isinstance(value, dict):
            value, f = _scale(value, k)
            found |= f
        elif isinstance(value, list):
            new = []
            for v in value:
                if isinstance(v, dict):
                    v, f = _scale(v, k)
                    found |= f
                new.append(v)
            value = new
        out[key] = value
    if event.get("type") in _NOISY:
        out["noise_multiplier"] = float(event["noise_multiplier"]) * k
        found = True
    return out, found


def scaled_counts(planned_json: str, k: float) -> tuple[Counter, bool]:
    events, found = [], False
    for e in json.loads(planned_json):
        scaled, f = _scale(e, k)
        events.append(scaled)
        found |= f
    return compose.event_counts([json.dumps(events)]), found


def max_epsilon(spent_counts: Counter, planned_json: str, *, budget_epsilon: float, budget_delta: float,
                run_delta: float, spent: float) -> float | None:
    """Largest ε (at ``run_delta``) of this run's mechanism, re-noised, that still fits the budget.

    Returns 0.0 when nothing fits, None when the planned events carry no noise to scale.
    """
    if '"NonPrivateDpEvent"' in planned_json:
        return None
    if spent >= budget_epsilon:
        return 0.0
    _, noisy = scaled_counts(planned_json, 1.0)
    if not noisy:
        return None

    def fits(k: float) -> bool:
        counts = spent_counts + scaled_counts(planned_json, k)[0]
        return compose.compute(counts, budget_delta, "pld", SEARCH_DISCRETIZATION) <= budget_epsilon

    lo, hi = 1.0, 1.0  # invariant once set: fits(hi), not fits(lo)
    if fits(1.0):
        while fits(lo):
            if lo < 1e-3:
                break  # noise this small is not a useful bound; report it
            hi, lo = lo, lo / 4
    else:
        while not fits(hi):
            if hi > 1e4:
                return 0.0
            lo, hi = hi, hi * 4
    for _ in range(12):  # log-space bisection: ~0.1% on k
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    own = scaled_counts(planned_json, hi)[0]
    return compose.compute(own, run_delta if run_delta > 0 else budget_delta, "pld")
