"""Which known source a new table's people belong to, from noisy sketches of column-group codes.

**Registering a table** (:func:`register`). Every column becomes a table-relative code per cell
(:mod:`privtrain.ledger.columns`: invariant to affine maps, unit and dtype changes, bijective recodings,
renamed or reordered columns). Column groups small enough to survive dropped columns and distinct enough
to identify people are chosen (:mod:`privtrain.ledger.groups`). Each group's code tuples go into a noisy bit array
(:mod:`privtrain.ledger.sketch`: one row changes the stored likelihood by at most ``e^EPS_S``). The
ledger stores the arrays, the columns' name-free descriptors, the groups (column positions), each
group's rate of colliding code tuples (rounded up to a power of two), and the row count rounded to two
significant digits.

**Comparing a new table** (:func:`compare`). Its columns are matched to the stored ones by content
(:mod:`privtrain.ledger.matching`); each
stored group whose columns all matched is read: every new row probes the bit of its code tuple (and, for
a continuous cell within ``matching.Z_PROBE`` sampling errors of a bin edge, the tuple across that edge). A row
hits when a probed bit reads 1. Per row and group the hit probability is known under both hypotheses:

* a row of other people reads a uniformly random bit (1 with probability ``o``, the array's share of ones),
  unless its code tuple collides with one of the source's: ``kappa = N * q``, with ``q`` the pooled rate of
  equal code tuples between two rows of either table (plus one pair: the data's resolution);
* a row of the source reads its own bit (1 with probability ``1 - p``) when its probes hold its true tuple
  (probability ``s``: 1 minus the chance that sampling moved it across an unprobed bin edge).

``z = sum(hits - E0) / sd0`` over every group read tests "no shared people". The share of the new
table's rows that are the source's people is the method-of-moments estimate ``f = sum(hits - E0) /
sum(E1 - E0)`` over the groups that see the source (their own z >= 2).

**Deciding** (:func:`_decide`). Linked when ``z >= Z_LINK`` (5 standard deviations: a chance link
has probability below 3e-7 under the model) **and** the shared rows are at least ``MIN_SHARE`` of the
new table or of the source (a copy embedded in a larger table links when it is a fifth of it). Messages
give shares rounded to 10%, never row counts.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import json
import math
import secrets
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privtrain.ledger import columns, groups, matching, sketch

MAX_PROBED = 6  # at most this many continuous cells of one row probe their neighbouring bin
MAX_OFFSET = 12  # a grid column whose anchor may be further off than this many steps is not searched
MAX_HYPOTHESES = 400  # codings of one group tried on the scan half of the rows
Z_LINK = 5.0
MIN_SHARE = 0.2
AMBIGUOUS = 0.05  # discrete orientations whose profiles are this close are both tried


@functools.lru_cache(maxsize=256)
def subkey(key: bytes, label: str) -> bytes:
    """A 16-byte SipHash key derived from the row key for one use (HMAC-SHA256)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError("the row key must be at least 16 bytes")
    return hmac.new(bytes(key), b"privtrain.overlap/" + label.encode(), hashlib.sha256).digest()[:16]


@dataclass
class Table:
    """A table as the ledger compares it: one view per usable column. Never stored."""

    n_rows: int
    views: list = field(repr=False)


def read(frame: pd.DataFrame, key: bytes, id_column: str | None = None) -> Table:
    """The table-relative views of ``frame``'s columns."""
    if frame.columns.duplicated().any():
        raise ValueError("column names must be distinct")
    hkey = "".join(chr(b & 0x7F) for b in subkey(key, "exact"))  # pandas' SipHash takes 16 ASCII characters

    def hash_text(text):
        return pd.util.hash_array(np.asarray(text, dtype=object), hash_key=hkey, categorize=True)

    views = [
        columns.view(frame.iloc[:, i], i, exact=str(c) == id_column, hash_text=hash_text)
        for i, c in enumerate(frame.columns)
    ]
    return Table(len(frame), [v for v in views if v is not None])


@dataclass(frozen=True)
class Stored:
    """What the ledger keeps of one registered table: its layout (JSON-able) and one bit array per group."""

    layout: dict
    bits: list = field(repr=False)

    def layout_json(self) -> str:
        return json.dumps(self.layout, sort_keys=True, separators=(",", ":"))

    def blob(self) -> bytes:
        return sketch.pack(self.bits)

    @classmethod
    def load(cls, layout_json: str, blob: bytes) -> Stored:
        layout = json.loads(layout_json)
        return cls(layout, sketch.unpack(blob, [g["m"] for g in layout["groups"]]))


def register(table: Table, key: bytes, *, eps_s: float = sketch.EPS_S, rng=None) -> Stored:
    """The noisy sketch of a table (``eps_s = inf``: no noise, for public data such as the built-ins)."""
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    chosen = groups.choose(table, rng)
    flip = sketch.flip_probability(eps_s / max(len(chosen), 1))
    salt = rng.bytes(8).hex()
    layout = {
        "v": 1,
        "n": float(f"{table.n_rows:.2g}"),
        "eps_s": eps_s if math.isfinite(eps_s) else None,
        "flip": flip,
        "salt": salt,
        "columns": [v.descriptor for v in table.views],
        "groups": [],
    }
    bits = []
    for gi, group in enumerate(chosen):
        tuples = groups.tuples(table, group)
        keys = groups.row_keys(tuples)
        m = sketch.size_for(pd.unique(keys).size)
        pos = sketch.positions(tuples, subkey(key, f"sketch/{salt}/{gi}"), m)
        bits.append(sketch.build(pos, m, flip, rng))
        layout["groups"].append({**group, "m": m, "collide": groups.power_of_two(groups.collision_rate(keys))})
    return Stored(layout, bits)


@dataclass(frozen=True)
class Overlap:
    """The estimated overlap of a new table with one stored table."""

    source: str
    fraction_of_new: float  # estimated share of the new table's rows that are the source's people
    fraction_of_known: float  # the same rows as a share of the source's (rounded) row count
    se: float  # standard error of fraction_of_new
    z: float  # evidence against "no shared people", in null standard deviations
    columns: int  # stored columns matched by content
    groups: int  # column groups read
    linked: bool
    reason: str


def _group_hits(new: Table, stored: Stored, gi: int, mapped: dict[int, int], key: bytes, n_known: float, memo: dict):
    """(hits, E0, E1, Var0) of the rows that test stored group ``gi`` (None: a column of it did not match).

    A group with several possible codings (ambiguous discrete orientations, grid offsets) picks the coding
    with the most hits on a random half of the rows (the scan half) and is tested on the other half only,
    so that choosing among codings does not inflate the evidence."""
    layout, group = stored.layout, stored.layout["groups"][gi]
    if not all(c in mapped for c in group["cols"]):
        return None
    options, probed, survival = [], [], np.ones(new.n_rows)
    for c, grid in zip(group["cols"], group["grid"]):
        view, desc = new.views[mapped[c]], layout["columns"][c]
        if grid:
            codings = matching.map_grid(view, desc, n_known, 2 * MAX_OFFSET + 1)
            if codings is None:
                return None
            options.append(codings)
        elif desc["k"] == "d":
            if ("d", c) not in memo:
                cands = matching.level_codings(view, desc)
                memo["d", c] = [
                    matching.row_codes(view, lc) for score, lc in cands if score <= cands[0][0] + AMBIGUOUS
                ][:2]
            options.append(memo["d", c])
        elif desc["k"] == "c":
            if ("c", c) not in memo:
                memo["c", c] = matching.map_continuous(view, n_known)
            p = memo["c", c]
            options.append([p.first])
            probed.append((len(options) - 1, p))
            survival *= p.survival
        else:
            options.append([view.codes])
    if math.prod(len(o) for o in options) > MAX_HYPOTHESES:
        return None
    bits, m = stored.bits[gi], group["m"]
    hkey = subkey(key, f"sketch/{layout['salt']}/{gi}")
    hypotheses = list(itertools.product(*options))
    rows = np.arange(new.n_rows)
    if len(hypotheses) > 1:
        order = np.random.default_rng(new.n_rows).permutation(new.n_rows)
        scan, rows = np.sort(order[: new.n_rows // 2]), np.sort(order[new.n_rows // 2 :])
        found = [_probe_tuples(np.column_stack(h)[scan], probed, scan) for h in hypotheses]
        hits = _read(
            np.concatenate([t for t, _, _ in found]),
            np.concatenate([o + i * len(scan) for i, (_, o, _) in enumerate(found)]),
            len(hypotheses) * len(scan),
            bits,
            hkey,
            m,
        )
        best = hypotheses[int(np.argmax(hits.reshape(len(hypotheses), len(scan)).sum(axis=1)))]
    else:
        best = hypotheses[0]
    base = np.column_stack(best)
    tuples, owner, n_probes = _probe_tuples(base[rows], probed, rows)
    hit = _read(tuples, owner, len(rows), bits, hkey, m)
    flip, ones = layout["flip"], float(bits.mean())
    pairs_new = new.n_rows * (new.n_rows - 1) / 2
    pairs_known = n_known * (n_known - 1) / 2
    q = (groups.collision_rate(groups.row_keys(base)) * pairs_new + group["collide"] * pairs_known + 1) / (
        pairs_new + pairs_known
    )
    kappa = np.minimum(1.0, n_probes * n_known * q)
    e0 = kappa * (1 - flip) + (1 - kappa) * (1 - (1 - ones) ** n_probes)
    own = (1 - flip) + flip * (1 - (1 - ones) ** (n_probes - 1))
    e1 = survival[rows] * own + (1 - survival[rows]) * e0
    return hit.astype(float), e0, e1, e0 * (1 - e0)


def _probe_tuples(base: np.ndarray, probed, rows: np.ndarray):
    """Every code tuple each row probes: (tuples, owner row of each, number of distinct probes per row).

    A row probes its own tuple, and for each continuous cell near a bin edge (at most ``MAX_PROBED`` of them)
    also the tuples with that cell in the neighbouring bin, in every combination."""
    alts = [(col, p.second[rows]) for col, p in probed]
    differs = (
        np.column_stack([second != base[:, col] for col, second in alts]) if alts else np.zeros((len(base), 0), bool)
    )
    differs &= np.cumsum(differs, axis=1) <= MAX_PROBED  # further cells of a row are not probed
    tuples, owner = [base], [np.arange(len(base))]
    live = [i for i in range(len(alts)) if differs[:, i].any()]  # columns where some row probes
    for mask in range(1, 1 << len(live)):
        chosen = [live[i] for i in range(len(live)) if mask >> i & 1]
        if len(chosen) > MAX_PROBED:
            continue
        at = np.nonzero(np.all(differs[:, chosen], axis=1))[0]
        if len(at) == 0:
            continue
        codes = base[at].copy()
        for i in chosen:
            codes[:, alts[i][0]] = alts[i][1][at]
        tuples.append(codes)
        owner.append(at)
    return np.concatenate(tuples), np.concatenate(owner), 2.0 ** differs.sum(axis=1)


def _read(tuples: np.ndarray, owner: np.ndarray, n: int, bits: np.ndarray, hkey: bytes, m: int) -> np.ndarray:
    """Whether any tuple of each of ``n`` owners reads 1 in ``bits``."""
    ones = bits[sketch.positions(tuples, hkey, m)]
    return np.bincount(owner, weights=ones, minlength=n) > 0


def compare(new: Table, stored: Stored, key: bytes, *, source: str = "known source") -> Overlap | None:
    """The overlap of ``new`` with one stored table; None when no stored group can be read."""
    layout = stored.layout
    n_known = float(layout["n"])
    mapped = matching.correspond(new.views, layout["columns"])
    memo: dict = {}  # a column's codings, shared by the groups that hold it
    parts = [
        r
        for gi in range(len(layout["groups"]))
        if (r := _group_hits(new, stored, gi, mapped, key, n_known, memo)) is not None
    ]
    if not parts or new.n_rows == 0:
        return None
    hits, e0, e1, var0 = (np.concatenate([p[i] for p in parts]) for i in range(4))
    sd0 = math.sqrt(max(float(var0.sum()), 1e-12))
    z = float((hits - e0).sum()) / sd0
    # The share is estimated from the groups that see the source at all (z >= 2): a group read under a
    # wrong coding (a grid shifted by an unknown number of steps) only dilutes it. The decision uses z.
    seen = [p for p in parts if (p[0] - p[1]).sum() >= 2 * math.sqrt(max(p[3].sum(), 1e-12))] or parts
    hits, e0, e1, var0 = (np.concatenate([p[i] for p in seen]) for i in range(4))
    signal, excess = float((e1 - e0).sum()), float((hits - e0).sum())
    share = min(1.0, max(0.0, excess / signal)) if signal > 0 else 0.0
    var = share * e1 * (1 - e1) + (1 - share) * var0
    se = math.sqrt(float(var.sum())) / signal if signal > 0 else math.inf
    return _decide(source, share, share * new.n_rows / n_known, se, z, len(mapped), len(parts))


def same_table(source: str) -> Overlap:
    """The overlap with a stored table of the same content fingerprint: the same rows."""
    return Overlap(
        source,
        1.0,
        1.0,
        0.0,
        math.inf,
        0,
        0,
        True,
        f"about 100% of these rows belong to source `{source}` (about 100% of it; the same table)",
    )


def _about(share: float) -> str:
    if share >= 0.95:
        return "100%"
    if share < 0.05:
        return "under 10%"
    return f"{max(10, round(share * 10) * 10)}%"


def _decide(source, share_new, share_known, se, z, n_columns, n_groups) -> Overlap:
    share_known = min(1.0, share_known)
    linked = z >= Z_LINK and max(share_new, share_known) >= MIN_SHARE
    how = f"matched by content on {n_columns} shared columns"
    if linked:
        reason = (
            f"about {_about(share_new)} of these rows belong to source `{source}` "
            f"(about {_about(share_known)} of it; {how})"
        )
    else:
        reason = f"not linked to `{source}`: no significant share of these rows belongs to it ({how})"
    return Overlap(source, share_new, share_known, se, z, n_columns, n_groups, linked, reason)
