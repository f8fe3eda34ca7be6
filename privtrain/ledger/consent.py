"""A source's declared provenance and consent: who collected it, on what basis, for which purposes, until when, where.

Recorded as chained ``provenance`` entries on the source's key (one per declaration or change), through
:class:`privtrain.ledger.core.Core`: a change is a recorded decision that names the hash of the values it
replaces, who made it (the entry's stamp) and why (``reason``, required). An edit of the file outside
privtrain breaks the hash chain, which ``privtrain ledger verify`` and every run's admission check.

The facts bind every run charged to the source (governed by a policy or not): :func:`judge` says which of
them a run meets; ``privtrain.policy.consent`` turns the verdicts into refusals. See docs/governance/provenance.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from privtrain.errors import UserError, require

STATUS = "provenance"
FIELDS = ("collected_by", "basis", "purposes", "retain_until", "regions")
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")


@dataclass(frozen=True)
class Provenance:
    """A source's declared facts (empty: not declared), and the entry that recorded them."""

    collected_by: str | None = None
    basis: str | None = None  # legal basis or consent scope, in words (e.g. "consent, form v3")
    purposes: tuple[str, ...] = ()  # the purposes the data may be used for; a run states its own (run.purpose)
    retain_until: str | None = None  # ISO date: no run may start after it
    regions: tuple[str, ...] = ()  # where the data may be processed; a run states where it executes (site.region)
    entry: int | None = field(default=None, compare=False)
    time: str | None = field(default=None, compare=False)
    user: str | None = field(default=None, compare=False)
    reason: str | None = field(default=None, compare=False)

    def facts(self) -> dict:
        """The declared values only, as JSON-ready data (what the digest covers)."""
        return {
            "collected_by": self.collected_by,
            "basis": self.basis,
            "purposes": list(self.purposes),
            "retain_until": self.retain_until,
            "regions": list(self.regions),
        }

    def digest(self) -> str:
        """SHA-256 of the declared values: a change records the digest of what it replaces."""
        return hashlib.sha256(json.dumps(self.facts(), sort_keys=True).encode()).hexdigest()

    def summary(self) -> dict:
        """For the card, run.json and metrics.json: the facts and the entry that recorded them."""
        return {**self.facts(), "entry": self.entry, "recorded": self.time, "by": self.user, "sha256": self.digest()}

    def describe(self) -> str:
        """One line: the declared facts in words."""
        parts = [
            f"collected by {self.collected_by or '(not declared)'}",
            f"basis {self.basis or '(not declared)'}",
            f"purposes {', '.join(self.purposes) or '(any: not declared)'}",
            f"retain until {self.retain_until or '(not declared)'}",
            f"regions {', '.join(self.regions) or '(any: not declared)'}",
        ]
        return "; ".join(parts)


@dataclass(frozen=True)
class Verdict:
    """One declared fact against one run: ``ok`` or not, and why, in words."""

    demand: str
    ok: bool
    why: str


def check_date(text: str, what: str = "--retain-until") -> str:
    """An ISO date (YYYY-MM-DD), normalised. Raises UserError otherwise."""
    try:
        return date.fromisoformat(str(text).strip()).isoformat()
    except ValueError:
        raise UserError(f"{what}={text!r} is not a date; give it as YYYY-MM-DD, e.g. 2027-06-30.") from None


def check_words(values, what: str) -> tuple[str, ...]:
    """Purposes or regions: short names (letters, digits, ``_ . : / -``), without duplicates."""
    if isinstance(values, str):
        values = [v for v in values.split(",")]
    out = tuple(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    bad = next((v for v in out if not _WORD.match(v)), None)
    require(
        bad is None,
        f"{what} has {bad!r}: use short names (letters, digits, _ . : / -), comma-separated, e.g. eu-west,eu-central.",
    )
    return out


def today() -> date:
    """The date a run starts, in UTC (retention is checked against it)."""
    return datetime.now(UTC).date()


def current(core, source: str) -> Provenance | None:
    """The provenance last recorded for the source key ``source`` (None: never declared)."""
    row = core.backend.latest(source=source, statuses=(STATUS,))
    if row is None:
        return None
    d = json.loads(row["detail"])
    return Provenance(
        d.get("collected_by"),
        d.get("basis"),
        tuple(d.get("purposes") or ()),
        d.get("retain_until"),
        tuple(d.get("regions") or ()),
        row["id"],
        row["time"],
        row["user"],
        d.get("reason"),
    )


def record(core, source: str, name: str | None, *, reason: str, **changes):
    """Chain a declaration, or a change of some facts (the others are kept), as one ``provenance`` entry.

    Args:
        changes: any of :data:`FIELDS`; None leaves a fact as recorded.

    Returns:
        (the entry, the provenance now in force).

    Raises:
        UserError: no reason, an unknown field, a malformed value, or nothing would change.
    """
    require(
        bool(reason and reason.strip()),
        "provenance set needs --reason: say why these facts are declared or "
        "changed (it is recorded with who changed them).",
    )
    unknown = sorted(set(changes) - set(FIELDS))
    require(not unknown, f"unknown provenance field {unknown[0]!r}; known: {', '.join(FIELDS)}" if unknown else "")
    given = {k: v for k, v in changes.items() if v is not None}
    if "purposes" in given:
        given["purposes"] = check_words(given["purposes"], "--purposes")
    if "regions" in given:
        given["regions"] = check_words(given["regions"], "--regions")
    if "retain_until" in given:
        given["retain_until"] = check_date(given["retain_until"])
    for key in ("collected_by", "basis"):
        if key in given:
            given[key] = str(given[key]).strip() or None
    with core.transaction():  # read and write under the lock: two officers cannot both replace the same values
        previous = current(core, source)
        base = previous or Provenance()
        new = Provenance(**{**{k: getattr(base, k) for k in FIELDS}, **given})
        require(
            previous is None or new != previous,
            f"the provenance of source {name or source[:12]!r} already "
            f"reads: {previous.describe() if previous else ''}; nothing to change.",
        )
        entry = core.append(
            status=STATUS,
            source=source,
            source_name=name,
            unit="example",
            epsilon=0.0,
            delta=0.0,
            detail=json.dumps(
                {
                    **new.facts(),
                    "reason": reason.strip(),
                    "replaces": None if previous is None else previous.digest(),
                    "replaces_entry": None if previous is None else previous.entry,
                }
            ),
        )
    return entry, current(core, source)


def judge(
    prov: Provenance | None,
    *,
    purpose: str | None,
    region: str | None,
    node_regions=(),
    extra_regions: tuple[str, ...] | None = None,
    on: date | None = None,
) -> list[Verdict]:
    """The declared facts against one run: purpose, retention and residency (empty: nothing declared).

    Args:
        purpose: ``run.purpose``; required when the source declares purposes.
        region: ``site.region``; required when the source's regions are restricted.
        node_regions: the regions federated clients declare (``fl.regions``), each checked like the run's.
        extra_regions: a policy's restriction (``sources: {NAME: {regions: [...]}}``): it narrows the
            declared regions (their intersection), never widens them.
        on: the run's start date (default: today, UTC).
    """
    out: list[Verdict] = []
    prov = prov or Provenance()
    if prov.purposes:
        out.append(
            Verdict(
                f"a purpose within consent ({', '.join(prov.purposes)})",
                purpose is not None and purpose in prov.purposes,
                "run.purpose is not set (a source that declares purposes needs every run's purpose)"
                if purpose is None
                else f"run.purpose={purpose}",
            )
        )
    if prov.retain_until:
        start = on or today()
        out.append(
            Verdict(
                f"a start on or before the retention date {prov.retain_until}",
                start <= date.fromisoformat(prov.retain_until),
                f"the run starts on {start.isoformat()}",
            )
        )
    allowed = allowed_regions(prov, extra_regions)
    if allowed is not None:
        where = f"processing in {', '.join(allowed) if allowed else 'no region (the declared and policy regions do not overlap)'}"
        out.append(
            Verdict(
                where,
                region is not None and region in allowed,
                "site.region is not set (a source with allowed regions needs the run's region)"
                if region is None
                else f"site.region={region}",
            )
        )
        outside = sorted({r for r in node_regions if r not in allowed})
        if node_regions:
            out.append(
                Verdict(
                    f"federated clients in {', '.join(allowed) or 'no region'}",
                    not outside,
                    f"fl.regions puts clients in {', '.join(outside)}"
                    if outside
                    else f"fl.regions: {', '.join(sorted(set(node_regions)))}",
                )
            )
    return out


def allowed_regions(prov: Provenance | None, extra: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
    """Where the source may be processed: its declared regions, narrowed by a policy's; None: anywhere."""
    declared = tuple(prov.regions) if prov is not None and prov.regions else None
    if declared is None or extra is None:
        return declared if extra is None else tuple(extra)
    return tuple(r for r in declared if r in extra)
