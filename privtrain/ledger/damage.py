"""Accepting a damaged ledger without laundering it: what the ledger still knows, and what it must count.

A damaged ledger admits no run until it is restored from a backup or someone accepts the damage with
``privtrain ledger accept-damage --reason TEXT``. Accepting records a decision; it must never lower what
the ledger counts as spent below what it last verified, or raise a budget. So, before anything is
written, every entry is sorted into one of two kinds:

- **known**: its content matches its hash, and that hash is pinned, by the next known entry's link, by
  the ledger's head record, this machine's anchor or spend record, or (with ``PRIVTRAIN_LEDGER_KEY``) its
  own signature. An entry whose only damage is an edited RDP curve is *restored*: the curve recomputed
  from its events gives back its hash, so the original is known exactly. Entries before an earlier
  ``accepted`` entry whose prefix digest still matches count as they were accepted.
- **unknown**: edited beyond restoration, unpinned (the chain was rewritten), or missing (deleted, or cut
  off the end).

Per budget key, the ledger then counts the larger of the known runs' curves and, when anything is
unknown, this machine's last verified spend (:mod:`privtrain.ledger.floors`) plus the known runs reserved
after it. An unknown entry after that record could have charged anything to anyone: accepting is then
refused, unless the acceptor chooses to count every budget as spent (``--exhaust-budgets``). A budget
is never raised: the most restrictive of the current, the known and the recorded one is kept.

What the filter must count beyond what the damaged entries show is charged as a compensating run
(recipe ``accept-damage``, events ``[]``, its RDP curve the difference) in the same transaction as the
``accepted`` entry, so admission keeps reading one sum of chained curves. A compensation that cannot be
expressed on the budget's grid of orders, and every exhausted budget, is a non-private charge (ε = ∞).
"""

from __future__ import annotations

import hmac
import json
import math
from dataclasses import dataclass, field

from privtrain.errors import UserError
from privtrain.ledger import filter as rdp_filter
from privtrain.ledger import floors, integrity, store
from privtrain.ledger.floors import Key

RECIPE = "accept-damage"
NON_PRIVATE = '[{"type":"NonPrivateDpEvent"}]'
_TOLERANCE = 1e-9  # two summation orders of the same curves differ by rounding only


@dataclass
class Assessment:
    """What accepting the damage will record. ``compensations``: (key, curve, δ) to charge;
    ``budgets``: (key, ε, δ, orders) to re-set; ``unknown`` and ``restored``: entry ids."""

    unknown: list[int] = field(default_factory=list)
    restored: list[int] = field(default_factory=list)
    floor_count: int = 0
    exhausted: bool = False
    compensations: list[tuple[Key, tuple[float, ...], float]] = field(default_factory=list)
    budgets: list[tuple[Key, float, float, tuple[float, ...]]] = field(default_factory=list)

    def detail(self) -> dict:
        return {
            "unknown_entries": _ranges(self.unknown),
            "restored_curves": _ranges(self.restored),
            "floor_from_entry": self.floor_count or None,
            "budgets_exhausted": self.exhausted,
            "compensated": [floors.key_text(k) for k, _, _ in self.compensations],
            "budgets_kept": [floors.key_text(k) for k, *_ in self.budgets],
        }

    def summary(self) -> str:
        parts = []
        if self.restored:
            parts.append(f"{len(self.restored)} edited RDP curve(s) restored from their events")
        if self.unknown:
            parts.append(
                f"entries {_ranges(self.unknown)} are edited or lost"
                + (
                    f", bounded by the spend this machine verified at entry {self.floor_count}"
                    if self.floor_count and not self.exhausted
                    else ""
                )
            )
        if self.exhausted:
            parts.append("every budget now counts as spent (ε=inf)")
        elif self.compensations:
            parts.append(f"{len(self.compensations)} budget(s) charged what the damaged entries no longer show")
        if self.budgets:
            parts.append(f"{len(self.budgets)} budget(s) set back to the most restrictive one verified")
        return "; ".join(parts) or "no charge or budget was affected"


def _ranges(ids: list[int]) -> str:
    out: list[list[int]] = []  # [first, last] id of each run of consecutive ids
    ids = sorted(ids)
    for i in ids:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


# --- which entries are known ----------------------------------------------------------------------------


def _restore(row: dict) -> dict | None:
    """The entry with its RDP curve recomputed from its events, if that gives back its hash."""
    if row["status"] not in floors.RUN_STATUSES or row.get("rdp") is None:
        return None
    try:
        candidate = {**row, "rdp": floors.curve_json(row["events"])}
    except (ValueError, TypeError, KeyError):
        return None
    return candidate if store.entry_hash(candidate) == row["hash"] else None


def _accepted_prefix(rows: list[dict], known: set[int]) -> int:
    """Index of the last known ``accepted`` entry whose recorded prefix still matches (0: none)."""
    for i in range(len(rows) - 1, -1, -1):
        r = rows[i]
        if r["status"] == "accepted" and r["id"] in known:
            detail = json.loads(r["detail"])
            if detail.get("entries") == i and integrity.prefix_digest(rows[:i]) == detail.get("prefix_digest"):
                return i
    return 0


def classify(rows: list[dict], pins: dict[int, str], key: bytes | None) -> tuple[set[int], dict[int, dict]]:
    """(ids of known entries, {id: restored row}) for the stored ``rows``; ``pins``: id -> hash that
    something outside the chain vouches for (a conflicting pin leaves that entry unknown)."""
    sign = integrity.signer(key)
    first_signed = next((r["id"] for r in rows if r["mac"] is not None), None)
    restored: dict[int, dict] = {}
    known: set[int] = set()
    successor = None
    for r in reversed(rows):
        intact = store.entry_hash(r) == r["hash"]
        if not intact and (fixed := _restore(r)) is not None:
            restored[r["id"]], intact = fixed, True
        signed = sign is not None and r["mac"] is not None and hmac.compare_digest(r["mac"], sign(r["hash"]))
        if sign is not None and first_signed is not None and r["id"] >= first_signed and not signed:
            intact = False  # in the signed era an entry without a valid signature proves nothing
        linked = (
            successor is not None
            and successor["id"] == r["id"] + 1
            and successor["id"] in known
            and successor["prev_hash"] == r["hash"]
        )
        pin = pins.get(r["id"])
        if intact and (pin is None or pin == r["hash"]) and (linked or signed or pin is not None):
            known.add(r["id"])
        successor = r
    start = _accepted_prefix(rows, known)
    known.update(r["id"] for r in rows[:start])
    for r in rows[:start]:
        restored.pop(r["id"], None)  # accepted as they stand: counted as stored
    return known, restored


# --- what must be counted -------------------------------------------------------------------------------


def _restrictive(budgets: list) -> tuple[float, float, tuple[float, ...]] | None:
    """The tightest of several budgets (None, no budget, is the loosest)."""
    present = [b for b in budgets if b is not None]
    if not present:
        return None
    return (
        min(b[0] for b in present),
        min(b[1] for b in present),
        next((b[2] for b in budgets if b is not None), rdp_filter.ORDERS),
    )


def _needs(floor: tuple[float, ...], current: tuple[float, ...]) -> tuple[float, ...] | None:
    """floor − current where positive beyond rounding, else 0; None when nothing is needed."""
    out = tuple(f - c if f > c + _TOLERANCE * max(1.0, abs(f)) else 0.0 for f, c in zip(floor, current))
    out = tuple(math.inf if math.isinf(f) and not math.isinf(c) else x for x, f, c in zip(out, floor, current))
    return out if any(x > 0 for x in out) else None


def assess(
    rows: list[dict],
    head: tuple[int, str | None],
    *,
    anchor: dict | None,
    recorded: dict | None,
    key: bytes | None,
    exhaust: bool,
) -> Assessment:
    """Decide what accepting the damage of ``rows`` must record (nothing is written here).

    Args:
        head: the ledger's head record (id, hash).
        anchor: this machine's anchor (:func:`integrity.read_anchor`); recorded: its spend record
            (:func:`integrity.read_floors`).
        exhaust: count every budget as spent when an unknown entry is not covered by ``recorded``.

    Raises:
        UserError: unknown entries that nothing bounds, without ``exhaust``.
    """
    pins = {}
    for record in (anchor, recorded):
        if record and record.get("count"):
            pins[int(record["count"])] = record["head"]
    if head[0] and head[1]:
        pins.setdefault(head[0], head[1])
    known, restored = classify(rows, pins, key)
    present = {r["id"] for r in rows}
    last = max([0, *present, head[0] or 0, *(int(r["count"]) for r in (anchor, recorded) if r)])
    unknown = sorted((present - known) | (set(range(1, last + 1)) - present))
    out = Assessment(unknown=unknown, restored=sorted(restored))

    current, seen = floors.Spend(), floors.Spend()
    current.add(rows)
    seen.add(restored.get(r["id"], r) for r in rows if r["id"] in known)
    floor_count, recorded_keys = 0, {}
    if unknown and recorded:
        floor_count, recorded_keys = int(recorded["count"]), recorded["keys"]
    uncovered = [i for i in unknown if i > floor_count]
    if uncovered and not exhaust:
        where = (
            f"after the last state this machine verified (entry {floor_count})"
            if floor_count
            else "and this machine holds no verified record of this ledger's spend"
        )
        raise UserError(
            f"entries {_ranges(uncovered)} were edited or lost {where}: what they charged cannot be "
            "bounded, so accepting the damage would lower the spend; restore the ledger from a backup, "
            "accept it on the machine that last wrote to it, or pass --exhaust-budgets to count every "
            "budget as spent. Nothing was recorded."
        )
    out.floor_count, out.exhausted = floor_count, bool(uncovered)

    for k in sorted(current.keys() | seen.keys() | set(recorded_keys)):
        rec_curve, rec_budget = recorded_keys.get(k, (None, None))
        rec_budget = None if rec_budget is None else (*rec_budget, rdp_filter.ORDERS)
        budget = _restrictive([current.budget(k), seen.budget(k), rec_budget])
        if budget is not None and budget[:2] != (current.budget(k) or (None, None))[:2]:
            out.budgets.append((k, budget[0], budget[1], budget[2]))
        if budget is None:
            continue  # nothing is admitted against an unbudgeted key
        floor = seen.total(k)
        if rec_curve is not None:
            floor = floors.maximum(floor, floors.add(rec_curve, seen.total(k, after=floor_count)))
        if out.exhausted:
            floor = (math.inf,) * len(floor)
        needed = _needs(floor, current.total(k))
        if needed is not None:
            if tuple(budget[2]) != rdp_filter.ORDERS:
                needed = (math.inf,) * len(needed)  # a compensation is only counted on the default grid
            out.compensations.append((k, needed, budget[1]))
    return out


def entries(assessment: Assessment, accepted_id: int) -> list[dict]:
    """The chained fields to append after the ``accepted`` entry: each compensation as a reservation and
    its commit, then each budget set back."""
    out = []
    for (source, unit, scope), curve, delta in assessment.compensations:
        infinite = any(math.isinf(x) for x in curve)
        fields = dict(
            run_id=f"{RECIPE}-{accepted_id}",
            recipe=RECIPE,
            source=source,
            unit=unit,
            scope=scope,
            events=NON_PRIVATE if infinite else "[]",
            epsilon=math.inf if infinite else 0.0,
            delta=delta,
            rdp=json.dumps(["inf" if math.isinf(x) else x for x in curve]),
            detail=json.dumps({"accepted_damage": accepted_id}),
        )
        out.append(dict(status="reserved", **fields))
        out.append(dict(status="committed", ref=None, **fields))  # ref: the reservation's id, set on append
    for (source, unit, scope), epsilon, delta, orders in assessment.budgets:
        out.append(
            dict(
                status="budget",
                source=source,
                unit=unit,
                scope=scope,
                epsilon=epsilon,
                delta=delta,
                detail=json.dumps({"orders": list(orders), "accepted_damage": accepted_id}),
            )
        )
    return out
