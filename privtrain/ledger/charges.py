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

from privtrain.errors import UserError
from privtrain.ledger import rows as rows_mod
from privtrain.ledger.model import Charge, RunRequest
from privtrain.sources import Source


def build(book, request: RunRequest) -> tuple[Charge, ...]:
    common = dict(run_id=request.run_id, recipe=request.recipe, config_hash=request.config_hash,
                  fingerprint=request.fingerprint, allow_non_private=request.allow_non_private,
                  default_budget=request.default_budget)
    lineage = book.lineage(request.fingerprint)
    if lineage is not None:  # synthetic rows: post-processing of a charged synthesizer
        name = lineage.child_name or request.source.name
        return tuple(_charge(m, Source(request.fingerprint, name, "derived"), parent=lineage.parent, **common)
                     for m in request.mechanisms)
    primary, links, table_rows, adopted, declared_link = request.source, [], None, None, None
    if primary.derived_from:
        primary, declared_link = _parent(book, primary)
    if request.table is not None:
        table_rows = rows_mod.of_table(book, request.table, request.fingerprint, request.id_column)
        links = rows_mod.links(book, table_rows, exclude={primary.key})
        if primary.kind == "content" and links:  # an undeclared table holding a known source's people
            adopted, links = links[0], links[1:]
            primary = Source(adopted.source, adopted.name, "content")
        table_rows = table_rows.with_standing(*_standing(book, request.source, table_rows, adopted))
    out: list[Charge] = []
    for m in request.mechanisms:
        if m.unit == "client":
            out.append(_charge(m, primary, scope=m.population.key, scope_label=m.population.label, **common))
            continue
        out.append(_charge(m, primary, link=adopted.reason if adopted else declared_link, **common))
        out.extend(_charge(m, Source(l.source, l.name, "content"), link=l.reason, **common) for l in links)
    if table_rows is not None and out:
        first = next(i for i, c in enumerate(out) if c.source == primary.key)
        out[first] = _with_rows(out[first], table_rows)
    return tuple(out)


def _parent(book, source: Source) -> tuple[Source, str]:
    """``dataset.derived_from=NAME``: the known source NAME (or a built-in) the run is charged to, and why."""
    try:
        key = book.resolve(source.key) if source.key != "ledger" else None
    except UserError:
        key = None
    if key is None:
        raise UserError(f"dataset.derived_from={source.key!r}: the ledger {book.path} knows no such source; name a "
                        "built-in or a source it has charged or registered (privtrain ledger show), or declare a "
                        "new source with dataset.source=NAME.")
    name = book.name(key) or source.name
    return (Source(key, name, "declared", derived_from=True),
            f"declared derived from source `{name}` (dataset.derived_from)")


def _standing(book, declared: Source, table_rows, adopted) -> tuple[str, float]:
    if declared.kind == "builtin":
        return "builtin", 0.0
    if declared.declared:
        return "declared", 0.0
    if adopted is not None:
        return "linked", adopted.fraction_of_new
    return ("registered" if rows_mod.is_registered(book, table_rows.fingerprint) else "unregistered"), 0.0


def _charge(m, source: Source, **kw) -> Charge:
    return Charge(source=source.key, source_name=source.name, unit=m.unit, events=m.events, delta=m.delta,
                  epsilon=m.epsilon, **kw)


def _with_rows(charge: Charge, table_rows) -> Charge:
    from dataclasses import replace

    return replace(charge, rows=table_rows)
