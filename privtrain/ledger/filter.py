"""Admission control for a data source's budget: a Rényi-DP privacy filter.

Runs on a source are chosen adaptively (after seeing earlier results) and the
ledger stops admitting them near the budget (ε_B, δ_B): fully adaptive
composition. Admission therefore uses an RDP filter, which has a proof for it:

* at budget creation, freeze (ε_B, δ_B) and a grid of orders Λ (:data:`ORDERS`);
* store each run's RDP curve ρ_i(α), α ∈ Λ, from its DpEvents (add-or-remove-one);
* admit a new run iff some α ∈ Λ has Σ_i ρ_i(α) + ρ_new(α) ≤ ε_B − log(|Λ|/δ_B)/(α−1).

For one order this is the Rényi filter of Feldman & Zrnic 2021 ("Individual
privacy accounting via a Rényi filter", NeurIPS 2021): the adaptive composition
stopped this way is (α, B)-RDP. Lécuyer 2021 ("Practical privacy filters and
odometers with Rényi differential privacy and applications to differentially
private deep learning") extends it to a grid of orders: each order's filter
converts to (ε_B, δ_B/|Λ|)-DP and a union bound over Λ gives (ε_B, δ_B)-DP for the
whole adaptive sequence, whichever order ends up carrying it on a given path.

The tight PLD accountant is NOT used for admission. Admitting while the composed
PLD ε ≤ ε_B (the "natural" filter) is sound for a sequence fixed in advance, but
recent work shows the natural f-DP/PLD filter is not valid in general for
adaptively chosen, subsampled mechanisms (arXiv 2602.06756, arXiv 2602.15815).
PLD stays the number to report for what was spent; the filter decides admission.

Pure functions; dp-accounting is imported lazily so ``privtrain ledger show``
starts fast.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import Counter

# 17 orders. For Gaussian-like curves (ρ(α) = cα) the best order is ≈ 1 + sqrt(log(|Λ|/δ)/c):
# about 2 at (ε_B=20, δ_B=1e-3) and about 90 at (ε_B=0.5, δ_B=1e-8), so the grid spans
# 1.5..128, roughly geometric (ratio ≤ 1.5). Over ε_B ∈ [0.5, 20], δ_B ∈ [1e-8, 1e-3] it
# loses < 3% of the admissible RDP to discretization versus a continuum of orders. More
# orders would cost log|Λ| in every threshold. Orders below 1.5 are left out: dp-accounting
# often cannot evaluate them for subsampled Gaussians (its fractional series fails to
# converge and it reports inf), and they only matter for ε_B well above 20.
ORDERS: tuple[float, ...] = (
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    6.0,
    8.0,
    11.0,
    16.0,
    22.0,
    32.0,
    45.0,
    64.0,
    90.0,
    128.0,
)
_NOISY = ("GaussianDpEvent", "LaplaceDpEvent")


def _canonical(events) -> str:
    """Canonical JSON text (sorted keys, no spaces) for DpEvents or JSON text."""
    if isinstance(events, str):
        return json.dumps(json.loads(events), sort_keys=True, separators=(",", ":"))
    from privtrain.privacy import events as ev

    return ev.dumps(list(events))


def _orders(orders) -> tuple[float, ...]:
    out = tuple(float(a) for a in orders)
    if not out or any(not a > 1.0 for a in out):
        raise ValueError(f"RDP orders must be a non-empty grid of values > 1, got {orders!r}.")
    return out


@functools.lru_cache(maxsize=1024)
def _rdp_curve_cached(text: str, orders: tuple[float, ...]) -> tuple[float, ...]:
    if '"type":"NonPrivateDpEvent"' in text:
        return (math.inf,) * len(orders)
    import dp_accounting

    from privtrain.privacy import events as ev

    acc = dp_accounting.rdp.RdpAccountant(
        orders=list(orders), neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    counts = Counter(json.dumps(e, sort_keys=True, separators=(",", ":")) for e in json.loads(text))
    absl = logging.getLogger("absl")  # an order whose series does not converge is set to inf (safe): say nothing
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        for key, count in sorted(counts.items()):  # identical events: one self-composition
            event = ev.from_json(json.loads(key))
            if not acc.supports(event):
                raise ValueError(
                    f"RDP cannot account for {type(event).__name__} under add-or-remove-one adjacency: {key[:300]}"
                )
            acc.compose(event, count)
    finally:
        absl.setLevel(level)
    return tuple(float(x) for x in acc._rdp)  # dp-accounting keeps no public accessor


def rdp_curve(events, orders=ORDERS) -> tuple[float, ...]:
    """RDP ε(α) at each order of the composition of ``events``.

    ``events`` is a sequence of DpEvents, or their canonical JSON text as produced
    by :func:`privtrain.privacy.events.dumps`. Returns +inf everywhere when a
    NonPrivateDpEvent occurs anywhere and 0.0 everywhere for no events. Cached by
    (canonical JSON, orders). Raises ValueError for an event RDP cannot account.
    """
    return _rdp_curve_cached(_canonical(events), _orders(orders))


# mypy does not model attributes added to a function: the cache's own are exposed on the public name.
rdp_curve.cache_info, rdp_curve.cache_clear = (  # type: ignore[attr-defined]
    _rdp_curve_cached.cache_info,
    _rdp_curve_cached.cache_clear,
)


def thresholds(budget_epsilon: float, budget_delta: float, orders=ORDERS) -> tuple[float, ...]:
    """ε_B − log(|Λ|/δ_B)/(α−1) per order α of Λ = ``orders``."""
    orders = _orders(orders)
    if not 0.0 < budget_delta < 1.0:
        raise ValueError(f"budget_delta must be in (0, 1), got {budget_delta!r}.")
    slack = math.log(len(orders) / budget_delta)
    return tuple(float(budget_epsilon) - slack / (a - 1.0) for a in orders)


def add(*curves) -> tuple[float, ...]:
    """Elementwise sum of RDP curves (inf-safe: inf + x = inf)."""
    if not curves:
        raise ValueError("add() needs at least one curve.")
    n = len(curves[0])
    if any(len(c) != n for c in curves):
        raise ValueError(f"RDP curves of different lengths: {[len(c) for c in curves]}.")
    sums = (math.fsum(float(c[i]) for c in curves) for i in range(n))
    return tuple(x if x == x else math.inf for x in sums)  # inf + x = inf; nan only from bad input


def _check(curve, orders: tuple[float, ...], name: str) -> tuple[float, ...]:
    if len(curve) != len(orders):
        raise ValueError(f"{name} has {len(curve)} values for {len(orders)} orders.")
    return tuple(float(x) for x in curve)


def admits(spent, planned, *, budget_epsilon: float, budget_delta: float, orders=ORDERS) -> bool:
    """True iff some order keeps spent + planned within its threshold (the filter's rule)."""
    orders = _orders(orders)
    total = add(_check(spent, orders, "spent"), _check(planned, orders, "planned"))
    return any(t <= th for t, th in zip(total, thresholds(budget_epsilon, budget_delta, orders)))


def certified_epsilon(spent, *, budget_delta: float, orders=ORDERS) -> float:
    """min over α of spent(α) + log(|Λ|/δ_B)/(α−1): the "filter ε" at δ_B.

    0.0 when nothing is spent, inf when spent is inf at every order. Whenever the
    filter admitted everything in ``spent`` this is ≤ ε_B. It is a valid (ε, δ_B)
    bound for a sequence fixed in advance; under adaptivity the guarantee is the
    frozen (ε_B, δ_B).
    """
    orders = _orders(orders)
    spent = _check(spent, orders, "spent")
    if all(x == 0.0 for x in spent):
        return 0.0
    slack = math.log(len(orders) / budget_delta)
    return min(s + slack / (a - 1.0) for s, a in zip(spent, orders))


def _scale(node, k: float):
    """(copy of a JSON event tree with every Gaussian/Laplace noise × k, found any)."""
    if isinstance(node, list):
        pairs = [_scale(v, k) for v in node]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    if not isinstance(node, dict):
        return node, False
    by_key = {key: _scale(v, k) for key, v in node.items()}
    out, found = {key: p[0] for key, p in by_key.items()}, any(p[1] for p in by_key.values())
    if node.get("type") in _NOISY:
        out["noise_multiplier"] = float(node["noise_multiplier"]) * k
        found = True
    return out, found


def max_epsilon(
    spent, planned_events, *, budget_epsilon: float, budget_delta: float, run_delta: float, orders=ORDERS
) -> float | None:
    """Largest own PLD ε (at ``run_delta``) the planned run could use and still be admitted.

    The run keeps its shape (sampling rate, steps); only its Gaussian/Laplace noise
    is scaled by k, bisected in log space to ~0.1%. Returns 0.0 when nothing fits
    (not even k = 1e4), None when the planned events are non-private or carry no
    noise to scale. ``planned_events`` may be DpEvents or their canonical JSON.
    """
    orders = _orders(orders)
    spent = _check(spent, orders, "spent")
    tree = json.loads(_canonical(planned_events))
    if '"NonPrivateDpEvent"' in json.dumps(tree):
        return None
    if not _scale(tree, 1.0)[1]:
        return None

    def scaled(k: float) -> str:
        return json.dumps(_scale(tree, k)[0], sort_keys=True, separators=(",", ":"))

    def fits(k: float) -> bool:
        return admits(
            spent, rdp_curve(scaled(k), orders), budget_epsilon=budget_epsilon, budget_delta=budget_delta, orders=orders
        )

    if not admits(spent, (0.0,) * len(orders), budget_epsilon=budget_epsilon, budget_delta=budget_delta, orders=orders):
        return 0.0
    if fits(1.0):  # bracket: fits(hi), not fits(lo)
        hi = 1.0
        while hi > 1e-3 and fits(hi / 4):
            hi /= 4
        lo = hi / 4 if hi > 1e-3 else hi  # noise below 1e-3 still fits: report it, search no further
    else:
        lo = 1.0
        while not fits(lo * 4):
            lo *= 4
            if lo >= 1e4:
                return 0.0
        hi = lo * 4
    for _ in range(12):  # log-space bisection to ~0.1% on k (4**(1/2**11) < 1.001)
        if hi / lo <= 1.001:
            break
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    from privtrain.privacy import events as ev

    return ev.epsilon_pld(ev.loads(scaled(hi)), run_delta if run_delta > 0 else budget_delta)
