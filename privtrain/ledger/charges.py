"""The one constructor of a run's charges: which budgets a run touches, and with which events.

Every recipe describes its mechanisms (a :class:`~privtrain.ledger.model.RunRequest`); this module
turns them into charges, so that no recipe can get the accounting wrong on its own:

- an **example-level** mechanism charges the run's source, and every known source that shares
  people with the run's table (found by content from noisy sketches, see :mod:`privtrain.ledger.rows`).
  An undeclared table that holds a known source's people (a subset, appended rows, another format,
  rescaled, renamed or recoded columns) *is* that source: it is charged there. A table declared as
  derived from a known source (``dataset.derived_from``) is charged to it;
- a **client-level** mechanism charges the source's federated population (source + partitioning);
- **derived** (synthetic) data is post-processing: its runs are charged to the derived table only,
  and the plan names the parent whose guarantee it inherits.

The table's *standing* (built-in, declared, registered, linked or unregistered) travels with the
charge that registers its rows, for a policy's ``require_registered_source`` rule.
"""

from __future__ import annotations

import functools
import math

from privtrain.errors import UserError
from privtrain.ledger import rowcount
from privtrain.ledger import rows as rows_mod
from privtrain.ledger.model import Charge, RunRequest
from privtrain.sources import Source


def build(core, request: RunRequest) -> tuple[Charge, ...]:
    """Every charge of ``request``, before any policy (see :func:`privtrain.ledger.admission.charges_for`)."""
    access = request.access
    common = dict(
        run_id=request.run_id,
        recipe=request.recipe,
        config_hash=request.config_hash,
        fingerprint=access.fingerprint,
        allow_non_private=request.allow_non_private,
        default_budget=request.default_budget,
    )
    lineage = core.lineage(access.fingerprint)
    if lineage is not None:  # synthetic rows: post-processing of a charged synthesizer
        name = lineage.child_name or access.source.name
        return tuple(
            _charge(m, Source(access.fingerprint, name, "derived"), parent=lineage.parent, **common)
            for m in access.mechanisms
        )
    primary, links, table_rows, adopted, declared_link = access.source, [], None, None, None
    if primary.derived_from:
        primary, declared_link = _parent(core, primary)
    if access.table is not None:
        table_rows = rows_mod.of_table(core, access.table, access.fingerprint, access.id_column)
        links = rows_mod.links(core, table_rows, exclude={primary.key})
        if primary.kind == "content" and links:  # an undeclared table holding a known source's people
            adopted, links = links[0], links[1:]
            primary = Source(adopted.source, adopted.name, "content")
        table_rows = table_rows.with_standing(*_standing(core, access.source, table_rows, adopted))
    out: list[Charge] = []
    n_rows = rowcount.known_rows(None if access.table is None else len(access.table), source=primary.key)
    for m in access.mechanisms:
        if m.unit == "client":
            if m.population is None:  # Mechanism requires one for the client unit
                raise ValueError("a client-level mechanism without its population")
            out.append(_charge(m, primary, scope=m.population.key, scope_label=m.population.label, **common))
            continue
        out.append(_charge(m, primary, link=adopted.reason if adopted else declared_link, n_rows=n_rows, **common))
        out.extend(
            _charge(
                m,
                Source(link.source, link.name, "content"),
                link=link.reason,
                n_rows=rowcount.known_rows(source=link.source),
                **common,
            )
            for link in links
        )
    if table_rows is not None and out:
        first = next(i for i, c in enumerate(out) if c.source == primary.key)
        out[first] = _with_rows(out[first], table_rows)
    return tuple(out)


def _parent(core, source: Source) -> tuple[Source, str]:
    """``dataset.derived_from=NAME``: the known source NAME (or a built-in) the run is charged to, and why."""
    try:
        key = core.resolve(source.key) if source.key != "ledger" else None
    except UserError:
        key = None
    if key is None:
        raise UserError(
            f"dataset.derived_from={source.key!r}: the ledger {core.path} knows no such source; name a "
            "built-in or a source it has charged or registered (privtrain ledger show), or declare a "
            "new source with dataset.source=NAME."
        )
    name = core.name(key) or source.name
    return (
        Source(key, name, "declared", derived_from=True),
        f"declared derived from source `{name}` (dataset.derived_from)",
    )


def _standing(core, declared: Source, table_rows, adopted) -> tuple[str, float]:
    if declared.kind == "builtin":
        return "builtin", 0.0
    if declared.declared:
        return "declared", 0.0
    if adopted is not None:
        return "linked", adopted.fraction_of_new
    return ("registered" if rows_mod.is_registered(core, table_rows.fingerprint) else "unregistered"), 0.0


def _charge(m, source: Source, **kw) -> Charge:
    """One charge; its ε is the larger of the recipe's accountant's and the tight PLD figure of its events,
    so every check downstream (policy limits, reservation, card) uses at least the reported (PLD) figure."""
    return Charge(
        source=source.key,
        source_name=source.name,
        unit=m.unit,
        events=m.events,
        delta=m.delta,
        epsilon=reported_epsilon(m.events, m.delta, m.epsilon),
        **kw,
    )


def reported_epsilon(events, delta: float, epsilon: float) -> float:
    """The ε the ledger records and checks: at least the tight PLD ε of ``events`` at ``delta``."""
    from privtrain.privacy import events as ev

    events = list(events)
    if ev.is_non_private(events):
        return math.inf
    if delta <= 0 or not math.isfinite(epsilon):
        return float(epsilon)
    return max(float(epsilon), _pld(ev.dumps(events), float(delta)))


@functools.lru_cache(maxsize=64)
def _pld(events_json: str, delta: float) -> float:
    from privtrain.privacy import events as ev

    return ev.epsilon_pld(ev.loads(events_json), delta)


def _with_rows(charge: Charge, table_rows) -> Charge:
    from dataclasses import replace

    return replace(charge, rows=table_rows)
