"""The reported PLD estimate, composed incrementally: a new run composes onto the stored total.

For each budget key the ledger stores composed privacy loss distributions ("totals"), each tagged with
the chain position it covers (``upto``) and a digest of the charges it covers (every run reserved at or
before ``upto``, with the events it was charged then). To report a key's spend:

1. take the newest stored total whose digest matches the key's *current* charges reserved up to its
   position (a run committed later with other events than it reserved invalidates it; an older total
   may still match);
2. compose onto it only the runs reserved after it (identical events grouped into one
   self-composition), and store the result at the key's newest position;
3. without a matching total, compose everything from scratch (the same grouping).

A total is dp-accounting's ``PrivacyLossDistribution`` with pessimistic discretisation (so the estimate
never understates), serialised without pickle: a JSON header and the PMFs' raw little-endian arrays. It
is derived data: never chained, never read for admission (the RDP filter admits runs). It is written
after the commit, outside the write lock, and never waits for a writer.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Protocol

from privtrain.ledger import compose
from privtrain.ledger.compose import PLD_DISCRETIZATION, RunCharge


class Charged(Protocol):
    """What composing a charge reads: its events (canonical JSON). A stored :class:`RunCharge`, or a plan's."""

    @property
    def events_json(self) -> str: ...


MAGIC = b"privtrain-pld/1\n"
KEEP = 3  # totals kept per key: older positions help when a later commit changed a run's events


# --- serialisation (no pickle) -------------------------------------------------------------


def dumps(pld) -> bytes:
    """A PrivacyLossDistribution as bytes: magic, header length, JSON header, raw arrays."""
    import numpy as np
    from dp_accounting.pld import pld_pmf

    pmfs = [pld._pmf_remove] if pld._symmetric else [pld._pmf_remove, pld._pmf_add]
    header: dict = {"symmetric": bool(pld._symmetric), "pmfs": []}
    parts: list[bytes] = []
    for pmf in pmfs:
        common = {
            "discretization": float(pmf._discretization),
            "infinity_mass": float(pmf._infinity_mass),
            "pessimistic": bool(pmf._pessimistic_estimate),
        }
        if isinstance(pmf, pld_pmf.DensePLDPmf):
            probs = np.ascontiguousarray(pmf._probs, dtype="<f8")
            header["pmfs"].append({"kind": "dense", "lower_loss": int(pmf._lower_loss), "n": len(probs), **common})
            parts.append(probs.tobytes())
        else:  # sparse: keep the dict's order, which composition iterates
            losses = np.array(list(pmf._loss_probs.keys()), dtype="<i8")
            probs = np.array(list(pmf._loss_probs.values()), dtype="<f8")
            header["pmfs"].append({"kind": "sparse", "n": len(losses), **common})
            parts += [losses.tobytes(), probs.tobytes()]
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(4, "little") + head + b"".join(parts)


def loads(blob: bytes):
    """Inverse of :func:`dumps`. Raises ValueError on anything else."""
    import numpy as np
    from dp_accounting.pld import pld_pmf
    from dp_accounting.pld.privacy_loss_distribution import PrivacyLossDistribution

    if not blob.startswith(MAGIC):
        raise ValueError("not a stored PLD total")
    at = len(MAGIC)
    size = int.from_bytes(blob[at : at + 4], "little")
    header = json.loads(blob[at + 4 : at + 4 + size])
    at += 4 + size
    pmfs = []
    for h in header["pmfs"]:
        n = int(h["n"])
        if h["kind"] == "dense":
            probs = np.frombuffer(blob, dtype="<f8", count=n, offset=at).astype(np.float64)
            at += 8 * n
            pmfs.append(
                pld_pmf.DensePLDPmf(
                    h["discretization"], int(h["lower_loss"]), probs, h["infinity_mass"], h["pessimistic"]
                )
            )
        else:
            losses = np.frombuffer(blob, dtype="<i8", count=n, offset=at)
            probs = np.frombuffer(blob, dtype="<f8", count=n, offset=at + 8 * n)
            at += 16 * n
            pmfs.append(
                pld_pmf.SparsePLDPmf(
                    dict(zip((int(x) for x in losses), (float(p) for p in probs))),
                    h["discretization"],
                    h["infinity_mass"],
                    h["pessimistic"],
                )
            )
    if at != len(blob):
        raise ValueError("a stored PLD total has trailing bytes")
    return PrivacyLossDistribution(pmfs[0], None if header["symmetric"] else pmfs[1])


# --- which runs a total covers ------------------------------------------------------------------


def _identity(run: RunCharge) -> bytes:
    return f"{run.reservation_id}:{hashlib.sha256(run.events_json.encode()).hexdigest()}\n".encode()


def covered_digest(runs: Sequence[RunCharge], upto: int | None = None) -> str:
    """Digest of the charges reserved at or before ``upto`` (all without it), with their current events."""
    h = hashlib.sha256()
    for r in runs:
        if upto is None or r.reservation_id <= upto:
            h.update(_identity(r))
    return h.hexdigest()


def _prefix_digests(runs: Sequence[RunCharge], positions: Sequence[int]) -> dict[int, tuple[str, int]]:
    """{position: (digest of the runs reserved at or before it, how many)} in one pass (runs in reservation order)."""
    out, h, i = {}, hashlib.sha256(), 0
    for upto in sorted(positions):
        while i < len(runs) and runs[i].reservation_id <= upto:
            h.update(_identity(runs[i]))
            i += 1
        out[upto] = (h.hexdigest(), i)
    return out


def compose_onto(base, runs: Sequence[Charged], discretization: float = PLD_DISCRETIZATION):
    """``base`` (None: nothing yet) composed with the charges of ``runs``, identical events grouped."""
    import dp_accounting

    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=discretization)
    if base is not None:
        accountant._pld = base  # dp-accounting keeps no public setter; compose() extends _pld
    counts = compose.event_counts(r.events_json for r in runs)
    if counts:
        accountant.compose(dp_accounting.ComposedDpEvent(compose._events(counts)))
    return accountant._pld


def _epsilon(pld, delta: float) -> float:
    return float(pld.get_epsilon_for_delta(delta))


class Totals:
    """Spend per budget key: stored totals, extended with the runs they miss."""

    def __init__(self, backend, *, writable: bool) -> None:
        self._backend = backend
        self._writable = writable

    def _newest_match(self, key: tuple[str, str, str], runs: Sequence[RunCharge], discretization: float):
        """(stored total, runs it misses) for the newest usable total, or (None, all runs)."""
        candidates = list(self._backend.totals(*key, discretization))
        if not candidates:
            return None, list(runs)
        digests = _prefix_digests(runs, [c["upto"] for c in candidates])
        for c in candidates:  # newest first
            digest, n = digests[c["upto"]]
            if c["digest"] == digest and int(c["runs"]) == n:
                return c, list(runs[n:])
        return None, list(runs)

    def _pld(self, key, runs, upto: int, discretization: float, delta: float | None, store: bool):
        """(pld or None, ε at ``delta`` or None): the key's current total, composed and stored as needed."""
        total, missing = self._newest_match(key, runs, discretization)
        epsilons = json.loads(total["epsilons"]) if total is not None else {}
        if total is not None and not missing and delta is not None and repr(delta) in epsilons:
            return None, float(epsilons[repr(delta)])
        base = None
        if total is not None:
            try:
                blob = total["load"]()
                base = loads(blob) if blob is not None else None
            except ValueError:  # derived data that cannot be read is recomputed, never trusted
                base = None
            if base is None:
                missing = list(runs)
        pld = compose_onto(base, missing, discretization) if (missing or base is None) else base
        eps = _epsilon(pld, delta) if delta is not None else None
        if store and self._writable:
            if missing or base is None:
                self._backend.put_total(
                    *key,
                    discretization,
                    upto,
                    len(runs),
                    covered_digest(runs),
                    json.dumps({} if eps is None else {repr(delta): eps}),
                    dumps(pld),
                    KEEP,
                )
            elif eps is not None:
                epsilons[repr(delta)] = eps
                self._backend.update_total_epsilons(*key, discretization, total["upto"], json.dumps(epsilons))
        return pld, eps

    def spent(
        self,
        key: tuple[str, str, str],
        runs: Sequence[RunCharge],
        delta: float,
        upto: int,
        *,
        discretization: float = PLD_DISCRETIZATION,
        store: bool = True,
    ) -> float:
        """Tight (PLD) ε of every charge of ``key`` at ``delta``; ``upto`` is the newest entry of the key read."""
        if not runs:
            return 0.0
        if any('"NonPrivateDpEvent"' in r.events_json for r in runs):
            return math.inf
        return self._pld(key, runs, upto, discretization, delta, store)[1]

    def after(
        self,
        key: tuple[str, str, str],
        runs: Sequence[RunCharge],
        planned: Charged,
        delta: float,
        upto: int,
        *,
        discretization: float = PLD_DISCRETIZATION,
    ) -> float:
        """Tight ε of every charge plus a planned run (composed onto the stored total, not stored)."""
        if any('"NonPrivateDpEvent"' in r.events_json for r in (*runs, planned)):
            return math.inf
        if not runs:
            return _epsilon(compose_onto(None, [planned], discretization), delta)
        pld, _ = self._pld(key, runs, upto, discretization, None, True)
        return _epsilon(compose_onto(pld, [planned], discretization), delta)
