"""What a ledger was last verified to have spent, kept outside it: the floor that accepting damage keeps.

Admission counts, per budget key (source, unit, scope), the sum of its runs' chained RDP curves. Those
curves live in the ledger file, so whoever damages the file can lower them. Each time this machine
verifies a ledger (before every reservation, after every write by a handle that verified it, and on
``privtrain ledger verify``), it therefore records, beside the ledger's anchor in the user's data folder:

- the entry the state was verified at (count and hash), and
- for every budgeted key, the filter's sum over the key's runs then, and the budget then.

:mod:`privtrain.ledger.damage` reads this when someone accepts damage: entries that were edited or lost
before that point are bounded by what was verified then. With ``PRIVTRAIN_LEDGER_KEY`` set, the record
carries an HMAC, so it cannot be lowered without the key. The record is only ever written from a state
that verified, and only forward (a later entry count).

:class:`Spend` folds run entries the way the ledger composes them (:func:`privtrain.ledger.compose.fold`):
a commit replaces its reservation's events, a failure keeps them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path

from privtrain.ledger import filter as rdp_filter

Key = tuple[str, str, str]  # (source, unit, scope)
RUN_STATUSES = ("reserved", "committed", "failed")


def key_of(row: dict) -> Key:
    return (row["source"], row["unit"], row["scope"] or "")


def key_text(key: Key) -> str:
    return "|".join(key)


def key_from_text(text: str) -> Key:
    source, unit, scope = text.split("|", 2)
    return source, unit, scope


def curve_json(events_json: str) -> str:
    """A run's RDP curve on the filter's grid as the ledger chains it (see ``run.entry_fields``)."""
    return json.dumps([x if math.isfinite(x) else "inf" for x in rdp_filter.rdp_curve(events_json)])


@functools.lru_cache(maxsize=4096)
def parse_curve(text: str) -> tuple[float, ...]:
    """A chained curve (JSON list; "inf" for infinity); a sweep repeats one text, so parse it once."""
    return tuple(float(x) for x in json.loads(text))


def row_curve(row: dict) -> tuple[float, ...]:
    """The curve admission counts for a run entry: the chained one, else recomputed from its events."""
    if row.get("rdp") is not None:
        return parse_curve(row["rdp"])
    return rdp_filter.rdp_curve(row["events"])


def add(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(x + y for x, y in zip(a, b))  # curves are >= 0: inf + x = inf


def maximum(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(max(x, y) for x, y in zip(a, b))


ZERO = (0.0,) * len(rdp_filter.ORDERS)


def _budget(row: dict) -> tuple[float, float, tuple[float, ...]] | None:
    if row["status"] == "unbudget":
        return None
    orders = json.loads(row["detail"] or "{}").get("orders") or rdp_filter.ORDERS
    return float(row["epsilon"]), float(row["delta"]), tuple(float(a) for a in orders)


class Spend:
    """Per budget key: each run's RDP curve on :data:`~privtrain.ledger.filter.ORDERS` (by reservation id),
    their sum, and the latest budget. Fed rows in chain order; kept up to date incrementally."""

    def __init__(self, curve=row_curve) -> None:
        self._curve = curve
        self.runs: dict[Key, dict[int, tuple[str, tuple[float, ...]]]] = {}
        self.budgets: dict[Key, tuple[float, float, tuple[float, ...]] | None] = {}
        self._totals: dict[Key, tuple[float, ...]] = {}
        self._dirty: set[Key] = set()

    def add(self, rows: Iterable[dict]) -> None:
        for r in rows:
            status = r["status"]
            if status in ("budget", "unbudget"):
                self.budgets[key_of(r)] = _budget(r)
            elif status in RUN_STATUSES:
                self._add_run(key_of(r), r)

    def _add_run(self, key: Key, r: dict) -> None:
        runs = self.runs.setdefault(key, {})
        if r["status"] == "reserved":
            curve = self._curve(r)
            runs[r["id"]] = ("reserved", curve)
            if key not in self._dirty:
                self._totals[key] = add(self._totals.get(key, ZERO), curve)
            return
        prev = runs.get(r["ref"])
        if prev is None or prev[0] == "committed":
            return  # a commit is final; an entry for an unknown reservation charges nothing (as compose.fold)
        if r["status"] == "failed":
            runs[r["ref"]] = ("failed", prev[1])
            return
        curve = self._curve(r)
        runs[r["ref"]] = ("committed", curve)
        if curve != prev[1]:
            self._dirty.add(key)  # a charge changed in place: sum the key afresh when asked

    def keys(self) -> set[Key]:
        return set(self.runs) | set(self.budgets)

    def total(self, key: Key, after: int = 0) -> tuple[float, ...]:
        """Σ of the key's run curves; ``after``: only runs reserved after that entry id."""
        runs = self.runs.get(key, {})
        if after:
            out = ZERO
            for rid, (_, curve) in runs.items():
                if rid > after:
                    out = add(out, curve)
            return out
        if key in self._dirty:
            out = ZERO
            for _, curve in runs.values():
                out = add(out, curve)
            self._totals[key] = out
            self._dirty.discard(key)
        return self._totals.get(key, ZERO)

    def budget(self, key: Key):
        return self.budgets.get(key)


# --- the record outside the ledger ---------------------------------------------------------------------


def _file(anchor_file: Path) -> Path:
    return anchor_file.with_name(anchor_file.stem + ".floors.json")


def _mac(body: str, key: bytes | None) -> str | None:
    return None if key is None else _hmac(body, key)


def _hmac(body: str, key: bytes) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _encode(curve: tuple[float, ...]) -> list:
    return [x if math.isfinite(x) else "inf" for x in curve]


def record(anchor_file: Path, ledger: str, count: int, head: str, spend: Spend, key: bytes | None) -> None:
    """Remember the budgeted keys' spend at verified entry ``count`` (best effort: never fails the caller)."""
    file = _file(anchor_file)
    try:
        old = read(anchor_file, ledger, key, check=False)
        if old is not None and old["count"] > count:
            return
        keys = {
            key_text(k): {"rdp": _encode(spend.total(k)), "budget": list(b[:2])}
            for k, b in spend.budgets.items()
            if b is not None
        }
        body = json.dumps(
            {
                "ledger": ledger,
                "count": count,
                "head": head,
                "keys": keys,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            sort_keys=True,
        )
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"body": body, "mac": _mac(body, key)}))
        os.replace(tmp, file)
    except (OSError, ValueError):
        pass


def read(anchor_file: Path, ledger: str, key: bytes | None, *, check: bool = True) -> dict | None:
    """The record for ``ledger``: ``{"count", "head", "time", "keys": {Key: (curve, (ε, δ))}}``, or None when
    there is none, it names another ledger, or (``check``, with a key) its HMAC is not the key's."""
    try:
        outer = json.loads(_file(anchor_file).read_text())
        body = outer["body"]
        data = json.loads(body)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("ledger") != ledger:
        return None
    if check and key is not None and not hmac.compare_digest(str(outer.get("mac")), _hmac(body, key)):
        return None
    data["keys"] = {
        key_from_text(k): (tuple(float(x) for x in v["rdp"]), tuple(v["budget"])) for k, v in data["keys"].items()
    }
    return data
