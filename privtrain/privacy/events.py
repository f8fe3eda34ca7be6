"""DpEvents: what a run did to the data, in a form any accountant can compose.

Runs describe their mechanisms as dp-accounting ``DpEvent`` objects. The ledger
stores them as JSON and composes them later with a tight (PLD) accountant.

Example:
    >>> ev = dp_sgd_event(sample_rate=0.1, noise_multiplier=1.0, steps=100)
    >>> from_json(to_json(ev)) == ev
    True
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import dp_accounting
from dp_accounting import dp_event as _dp_event
from dp_accounting.dp_event import DpEvent  # a class (an alias assigned at runtime is not a type to mypy)


def dp_sgd_event(*, sample_rate: float, noise_multiplier: float, steps: int) -> DpEvent:
    """DP-SGD with Poisson sampling: a Poisson-sampled Gaussian repeated ``steps`` times.

    ``sample_rate=1.0`` (no subsampling, e.g. full-batch or shuffled batches that
    do not match Poisson sampling) gives a plain Gaussian: no amplification.
    """
    gaussian = dp_accounting.GaussianDpEvent(float(noise_multiplier))
    step = gaussian if sample_rate >= 1.0 else dp_accounting.PoissonSampledDpEvent(float(sample_rate), gaussian)
    return dp_accounting.SelfComposedDpEvent(step, int(steps))


def non_private_event() -> DpEvent:
    """A non-private access to the data: epsilon is infinite."""
    return dp_accounting.NonPrivateDpEvent()


# --- serialization -----------------------------------------------------------


def to_json(event: DpEvent) -> dict:
    """A JSON-ready dict: ``{"type": ClassName, field: value, ...}``, recursively."""
    import attr

    out: dict = {"type": type(event).__name__}
    for field in attr.fields(type(event)):
        value = getattr(event, field.name)
        if isinstance(value, DpEvent):
            value = to_json(value)
        elif isinstance(value, (list, tuple)):
            value = [to_json(v) if isinstance(v, DpEvent) else v for v in value]
        out[field.name] = value
    return out


def from_json(data: dict) -> DpEvent:
    """Inverse of :func:`to_json`.

    Raises:
        ValueError: ``data`` names an unknown event type.
    """
    data = dict(data)
    name = data.pop("type", None)
    cls = getattr(_dp_event, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, DpEvent)):
        raise ValueError(f"Unknown DpEvent type {name!r}.")
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, dict) and "type" in value:
            value = from_json(value)
        elif isinstance(value, list):
            value = [from_json(v) if isinstance(v, dict) and "type" in v else v for v in value]
        kwargs[key] = value
    return cls(**kwargs)


def dumps(events: Sequence[DpEvent]) -> str:
    """Canonical JSON for a list of events (sorted keys, no spaces)."""
    return json.dumps([to_json(e) for e in events], sort_keys=True, separators=(",", ":"))


def loads(text: str) -> list[DpEvent]:
    return [from_json(d) for d in json.loads(text)]


# --- composition -------------------------------------------------------------


def _grouped(events: Iterable[DpEvent]) -> list[DpEvent]:
    """Identical events become one SelfComposedDpEvent: same maths, far faster PLD."""
    counts = Counter(json.dumps(to_json(e), sort_keys=True) for e in events)
    out = []
    for key, count in sorted(counts.items()):
        event = from_json(json.loads(key))
        out.append(event if count == 1 else dp_accounting.SelfComposedDpEvent(event, count))
    return out


def is_non_private(events: Iterable[DpEvent]) -> bool:
    """True when any event (at any depth) is a NonPrivateDpEvent."""
    return any('"NonPrivateDpEvent"' in json.dumps(to_json(e)) for e in events)


def epsilon_pld(events: Sequence[DpEvent], delta: float, *, discretization: float = 1e-4) -> float:
    """Tight epsilon of the composition of ``events`` at ``delta`` (dp-accounting PLD).

    Returns ``math.inf`` for a non-private access and ``0.0`` for no events.
    """
    events = [e for e in events if not isinstance(e, dp_accounting.NoOpDpEvent)]
    if not events:
        return 0.0
    if is_non_private(events):
        return math.inf
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=discretization)
    accountant.compose(dp_accounting.ComposedDpEvent(_grouped(events)))
    return float(accountant.get_epsilon(delta))


def epsilon_rdp(events: Sequence[DpEvent], delta: float) -> float:
    """Epsilon of the same composition with the RDP accountant (looser; for comparison)."""
    events = [e for e in events if not isinstance(e, dp_accounting.NoOpDpEvent)]
    if not events:
        return 0.0
    if is_non_private(events):
        return math.inf
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.ComposedDpEvent(_grouped(events)))
    return float(accountant.get_epsilon(delta))
