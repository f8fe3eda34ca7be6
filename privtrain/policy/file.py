"""The policy file: where it is, what it may say, and its hash.

A policy is YAML, kept beside the ledger (the project's ``.privtrain/policy.yaml``, found the way the
ledger is) or named with ``ledger.policy=PATH``. Example::

    version: 1
    ledger:                       # optional: the project's ledger (privtrain ledger id); runs and releases elsewhere are refused
      id: 3f2a...                 # the hash of its first entry
      anchor: "120:ab12..."       # optional: a head it must still extend (privtrain ledger head)
    sources:                      # tags belong to sources here: a run's dataset.tags can only add rules
      patients: {tags: [health], regions: [eu-west]}   # regions: narrows the source's declared regions
    rules:
      - name: health-limits
        when: {tags: [health]}    # or {sources: [patients, digits]}; no `when`: every source
        max_epsilon_per_run: 2
        max_delta_per_run: 1.0e-5
        max_epsilon_total: 8      # enforced as the source's ledger budget (at total_delta, default 1e-5)
        recipes: [dp_sgd, federated]
        units: [example, client]
        forbid_non_private: true
        forbid_inferred_schema: true
        require_pii_scan: true
        require_audit: true       # before `privtrain release` marks a model releasable
        require_one_run_audit: true   # the run audited its own configuration first (audit.one_run.enabled=true)
        dp_synthesizers_only: true
        require_registered_source: true   # a table must be a registered source, hold one's people, or be declared
        require_provenance: true  # the source's collector, basis and purposes are recorded (privtrain ledger provenance)
    risk:                         # optional: risk classes and their controls (privtrain.policy.risk)
      classes:
        high: {when: {tags: [health]}, controls: {max_epsilon: 3, approvals: 2, encryption: true}}
    monitoring: {psi_warn: 0.1, psi_alert: 0.25}   # optional: `privtrain monitor`'s thresholds (these are the defaults)
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from privtrain.errors import UserError, require, user_paths
from privtrain.policy.risk import RiskPolicy
from privtrain.policy.risk import parse as parse_risk

POLICY_NAME = "policy.yaml"
RECIPES = ("dp_sgd", "federated", "synthetic")
UNITS = ("example", "client")
_NUMBERS = ("max_epsilon_per_run", "max_delta_per_run", "max_epsilon_total", "total_delta")
_FLAGS = (
    "forbid_non_private",
    "forbid_inferred_schema",
    "require_pii_scan",
    "require_audit",
    "dp_synthesizers_only",
    "require_one_run_audit",
    "require_registered_source",
    "require_provenance",
)
_LISTS = ("recipes", "units")


@dataclass(frozen=True)
class Rule:
    """One rule: which sources it covers (``when``) and what it demands of their runs."""

    name: str
    tags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    max_epsilon_per_run: float | None = None
    max_delta_per_run: float | None = None
    max_epsilon_total: float | None = None
    total_delta: float = 1e-5
    recipes: tuple[str, ...] | None = None
    units: tuple[str, ...] | None = None
    forbid_non_private: bool = False
    forbid_inferred_schema: bool = False
    require_pii_scan: bool = False
    require_audit: bool = False
    dp_synthesizers_only: bool = False
    require_one_run_audit: bool = False
    require_registered_source: bool = False  # refuse a table the ledger does not know and nobody declared
    require_provenance: bool = False  # refuse a source whose collector, basis and purposes are not recorded

    def covers(self, source: str, tags: set[str]) -> bool:
        """Does the rule apply to runs on ``source`` carrying ``tags``? No ``when``: every source."""
        if not self.tags and not self.sources:
            return True
        return source in self.sources or bool(tags & set(self.tags))

    def scope(self) -> str:
        if not self.tags and not self.sources:
            return "every source"
        parts = [f"tag {t}" for t in self.tags] + [f"source {s}" for s in self.sources]
        return " or ".join(parts)


@dataclass(frozen=True)
class Policy:
    """A parsed policy. ``path`` is where it was read; ``sha256`` the hash of its bytes (recorded in the ledger)."""

    path: Path
    sha256: str
    rules: tuple[Rule, ...]
    source_tags: dict = field(default_factory=dict)  # source name -> tags the policy gives it
    text: str = ""  # the file as read (the bytes the hash covers): what the ledger's policy entry records
    ledger_id: str | None = None  # the project's ledger, pinned: the hash of its first entry
    ledger_anchor: str | None = None  # a head (COUNT:HASH) the pinned ledger must still extend
    risk: RiskPolicy | None = None  # risk classes and the controls each requires (privtrain.policy.risk)
    source_regions: dict = field(default_factory=dict)  # source name -> regions it may be processed in (narrowing)
    monitoring: tuple[float, float] | None = None  # (psi_warn, psi_alert) for `privtrain monitor`

    @property
    def label(self) -> str:
        return self.path.name

    def tags_of(self, source: str, declared: tuple[str, ...] = ()) -> set[str]:
        """The policy's tags for ``source`` plus those the run declares (a run can add tags, never remove them)."""
        return set(self.source_tags.get(source, ())) | set(declared)

    def rules_for(self, source: str, declared: tuple[str, ...] = ()) -> list[Rule]:
        tags = self.tags_of(source, declared)
        return [r for r in self.rules if r.covers(source, tags)]


def find(explicit: str | None, ledger_location: str | Path | None) -> Path | None:
    """The policy that governs a run: ``ledger.policy=PATH``, else ``$PRIVTRAIN_POLICY``, else ``policy.yaml``
    in the ledger's folder (the project's ``.privtrain/``). None: no policy."""
    named = explicit or os.environ.get("PRIVTRAIN_POLICY")
    if named:
        path = Path(named).expanduser()
        with user_paths("ledger.policy"):
            found = path.is_file()
        if not found:
            raise UserError(
                f"ledger.policy={named}: no such policy file; check the path (privtrain policy check PATH)."
            )
        return path
    return beside(ledger_location)


def beside(ledger_location: str | Path | None) -> Path | None:
    """The project's policy: ``policy.yaml`` in the ledger's folder, if there is one (not for a URL).

    Raises:
        UserError: something that is not a file stands there: a run must not go ahead ungoverned because the
            project's policy cannot be read.
    """
    if ledger_location is None or "://" in str(ledger_location):
        return None
    path = Path(ledger_location).parent / POLICY_NAME
    with user_paths(f"the project's policy {path}"):
        if not path.exists():
            return None
        if not path.is_file():
            raise UserError(
                f"the project's policy {path} is not a file (a folder?): no run goes ahead ungoverned; "
                "put the policy YAML there (one with `rules: []` lifts the rules, as a recorded change)."
            )
    return path


def load(path: str | Path) -> Policy:
    """Read and validate a policy file.

    Raises:
        UserError: unreadable YAML, an unknown key, or a value of the wrong type (naming the file and the key).
    """
    import yaml

    path = Path(path)
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(
            f"policy {path}: not valid YAML{where}; fix the file (privtrain policy check {path})."
        ) from None
    where = f"policy {path}"
    require(isinstance(data, dict), f"{where}: expected a mapping with `rules:`")
    _unknown(data, {"version", "ledger", "sources", "rules", "risk", "monitoring"}, where)
    require(data.get("version", 1) == 1, f"{where}: version {data.get('version')!r} is not supported; use version: 1")
    sources = data.get("sources") or {}
    require(isinstance(sources, dict), f"{where}: `sources` must map source names to {{tags: [...]}}")
    source_tags, source_regions = {}, {}
    for name, spec in sources.items():
        require(isinstance(spec, dict), f"{where}: sources.{name} must be a mapping like {{tags: [health]}}")
        _unknown(spec, {"tags", "regions"}, f"{where}: sources.{name}")
        source_tags[str(name)] = tuple(map(str, _list(spec.get("tags"), f"{where}: sources.{name}.tags")))
        if spec.get("regions") is not None:
            source_regions[str(name)] = tuple(map(str, _list(spec["regions"], f"{where}: sources.{name}.regions")))
    rules = data.get("rules") or []
    require(isinstance(rules, list), f"{where}: `rules` must be a list of rules")
    parsed = tuple(_rule(r, i, where) for i, r in enumerate(rules))
    names = [r.name for r in parsed]
    dup = next((n for n in names if names.count(n) > 1), None)
    require(dup is None, f"{where}: two rules are named {dup!r}; give each rule its own name")
    ledger_id, anchor = _ledger_pin(data.get("ledger"), where)
    risk = parse_risk(data["risk"], where) if data.get("risk") is not None else None
    return Policy(
        path.resolve(),
        hashlib.sha256(raw).hexdigest(),
        parsed,
        source_tags,
        raw.decode("utf-8", errors="replace"),
        ledger_id,
        anchor,
        risk,
        source_regions,
        _monitoring(data.get("monitoring"), where),
    )


def _monitoring(spec, where: str) -> tuple[float, float] | None:
    """``monitoring: {psi_warn, psi_alert}``: drift thresholds (defaults 0.1 and 0.25), warn below alert."""
    if spec is None:
        return None
    require(isinstance(spec, dict), f"{where}: `monitoring` must be a mapping like {{psi_warn: 0.1, psi_alert: 0.25}}")
    _unknown(spec, {"psi_warn", "psi_alert"}, f"{where}: monitoring")
    warn = _number(spec.get("psi_warn", 0.1), f"{where}: monitoring.psi_warn", delta=False)
    alert = _number(spec.get("psi_alert", 0.25), f"{where}: monitoring.psi_alert", delta=False)
    require(warn < alert, f"{where}: monitoring.psi_warn ({warn:g}) must be below psi_alert ({alert:g})")
    return warn, alert


def _ledger_pin(pin, where: str) -> tuple[str | None, str | None]:
    """``ledger: {id: HASH, anchor: COUNT:HASH}``: the project's ledger, by identity (and a head it extends)."""
    if pin is None:
        return None, None
    require(
        isinstance(pin, dict) and "id" in pin,
        f"{where}: `ledger` must be a mapping like {{id: HASH}} with the project ledger's id (privtrain ledger id)",
    )
    _unknown(pin, {"id", "anchor"}, f"{where}: ledger")
    ledger_id = str(pin["id"]).strip().lower()
    require(
        _is_hash(ledger_id),
        f"{where}: ledger.id={pin['id']!r} is not a ledger id; paste the 64 hex digits `privtrain ledger id` prints",
    )
    anchor = pin.get("anchor")
    if anchor is not None:
        anchor = str(anchor).strip().lower()
        count, _, digest = anchor.rpartition(":")
        require(
            _is_hash(digest) and (not count or count.isdigit()),
            f"{where}: ledger.anchor={pin['anchor']!r} is "
            "not a head; paste what `privtrain ledger head` prints (COUNT:HASH)",
        )
    return ledger_id, anchor


def _is_hash(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _rule(data, i: int, where: str) -> Rule:
    require(isinstance(data, dict), f"{where}: rules[{i}] must be a mapping")
    name = str(data.get("name") or f"rule {i + 1}")
    at = f"{where}, rule {name!r}"
    _unknown(data, {"name", "when", *_NUMBERS, *_FLAGS, *_LISTS}, at)
    when = data.get("when") or {}
    require(isinstance(when, dict), f"{at}: `when` must be a mapping like {{tags: [health]}}")
    _unknown(when, {"tags", "sources"}, f"{at}: when")
    out: dict[str, object] = dict(
        name=name,
        tags=tuple(map(str, _list(when.get("tags"), f"{at}: when.tags"))),
        sources=tuple(map(str, _list(when.get("sources"), f"{at}: when.sources"))),
    )
    for key in _NUMBERS:
        if data.get(key) is not None:
            out[key] = _number(data[key], f"{at}: {key}", delta="delta" in key)
    for key in _FLAGS:
        if key in data:
            require(isinstance(data[key], bool), f"{at}: {key} must be true or false, got {data[key]!r}")
            out[key] = data[key]
    for key, allowed in (("recipes", RECIPES), ("units", UNITS)):
        if data.get(key) is not None:
            values = tuple(map(str, _list(data[key], f"{at}: {key}")))
            bad = [v for v in values if v not in allowed]
            require(not bad, f"{at}: {key} has {bad[0]!r}; choose from {', '.join(allowed)}" if bad else "")
            out[key] = values
    return Rule(**out)  # type: ignore[arg-type]  # each key was checked and converted above


def _number(value, what: str, *, delta: bool) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number, got {value!r}") from None
    if delta:
        require(0 < x < 1, f"{what}={x:g} must lie in (0, 1)")
    else:
        require(math.isfinite(x) and x > 0, f"{what}={x:g} must be a positive, finite ε")
    return x


def _list(value, what: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    require(isinstance(value, list), f"{what} must be a list, got {value!r}")
    return value


def _unknown(data: dict, known: set[str], where: str) -> None:
    extra = sorted(set(map(str, data)) - known)
    require(not extra, f"{where}: unknown key {extra[0]!r}; known keys: {', '.join(sorted(known))}" if extra else "")
