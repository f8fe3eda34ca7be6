"""Risk classes: a policy sorts runs into classes (low, high, ...) and each class lists the controls it requires.

In the policy file::

    risk:
      default: low                  # the class of a run no class's `when` matches (optional)
      classes:                      # listed from the strictest down: the first class whose `when` matches applies
        high:
          when: {tags: [health], purposes: [diagnosis]}   # any listed tag, source or purpose matches
          controls:
            max_epsilon: 3          # each unit a run charges, per run
            units: [example]        # the DP units allowed
            audit: one_run          # one_run | membership | any: an audit before release
            approvals: 2            # distinct approvers before release (privtrain approve)
            encryption: true        # artifacts written encrypted (a key configured)
            monitoring: true        # DP reference statistics released at training time (privtrain monitor)
            max_fairness_gap: 0.1   # largest per-group accuracy gap in the card (dataset.sensitive)
        low:
          controls: {}

Decision: classes match in the order the file lists them, and the first match wins, so an officer orders
them by severity and a run that matches both "high" and "low" is high. A run that matches no class and
has no ``default`` is unclassified: only the policy's rules apply to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from privtrain.errors import require

AUDITS = ("one_run", "membership", "any")


@dataclass(frozen=True)
class Controls:
    """What a risk class requires of a run (None / False / 0: not required)."""

    max_epsilon: float | None = None
    units: tuple[str, ...] | None = None
    audit: str | None = None  # one_run | membership | any
    approvals: int = 0
    encryption: bool = False
    monitoring: bool = False
    max_fairness_gap: float | None = None

    def demands(self) -> list[str]:
        """The controls in words, for `privtrain policy explain`, the card and refusals."""
        out = []
        if self.max_epsilon is not None:
            out.append(f"ε ≤ {self.max_epsilon:g} per run")
        if self.units is not None:
            out.append(f"units {', '.join(self.units)}")
        if self.audit is not None:
            out.append(
                {
                    "one_run": "a one-run audit",
                    "membership": "a membership audit",
                    "any": "an audit (one-run or membership)",
                }[self.audit]
                + " before release"
            )
        if self.approvals:
            out.append(f"{self.approvals} approval{'s' if self.approvals > 1 else ''} before release")
        if self.encryption:
            out.append("encrypted artifacts")
        if self.monitoring:
            out.append("drift monitoring (DP reference statistics)")
        if self.max_fairness_gap is not None:
            out.append(f"per-group accuracy gap ≤ {self.max_fairness_gap:g}")
        return out


@dataclass(frozen=True)
class RiskClass:
    """One class of the policy: when it applies and what it requires."""

    name: str
    tags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    controls: Controls = Controls()

    def why(self, source: str, tags: set[str], purpose: str | None) -> tuple[str, ...]:
        """The reasons this class matches a run (empty: it does not)."""
        reasons = [f"source {source}"] if source in self.sources else []
        reasons += [f"tag {t}" for t in self.tags if t in tags]
        if purpose is not None and purpose in self.purposes:
            reasons.append(f"purpose {purpose}")
        return tuple(reasons)


@dataclass(frozen=True)
class Classification:
    """A run's class, why, and the controls that follow."""

    name: str
    reasons: tuple[str, ...]
    controls: Controls

    def line(self) -> str:
        demands = self.controls.demands()
        return (
            f"risk class {self.name} ({'; '.join(self.reasons)}): "
            f"{', '.join(demands) if demands else 'no extra controls'}"
        )


@dataclass(frozen=True)
class RiskPolicy:
    """The ``risk:`` section of a policy."""

    classes: tuple[RiskClass, ...] = ()
    default: str | None = None

    def classify(self, source: str, tags: set[str], purpose: str | None = None) -> Classification | None:
        """The first class (in file order) whose ``when`` matches the run; else the default; else None."""
        for c in self.classes:
            reasons = c.why(source, tags, purpose)
            if reasons:
                return Classification(c.name, reasons, c.controls)
        if self.default is not None:
            c = next(c for c in self.classes if c.name == self.default)
            return Classification(c.name, ("the policy's default class",), c.controls)
        return None


def parse(data, where: str) -> RiskPolicy:
    """Read the ``risk:`` section (``where`` names the file for messages).

    Raises:
        UserError: an unknown key, a value of the wrong type, or a default that names no class.
    """
    from privtrain.policy.file import UNITS, _list, _number, _unknown  # here: file.py imports this module

    require(isinstance(data, dict), f"{where}: `risk` must be a mapping like {{default: low, classes: {{...}}}}")
    _unknown(data, {"default", "classes"}, f"{where}: risk")
    classes = data.get("classes") or {}
    require(isinstance(classes, dict), f"{where}: risk.classes must map class names to {{when: ..., controls: ...}}")
    parsed = []
    for name, spec in classes.items():
        at = f"{where}: risk.classes.{name}"
        spec = spec or {}
        require(isinstance(spec, dict), f"{at} must be a mapping with `when` and `controls`")
        _unknown(spec, {"when", "controls"}, at)
        when = spec.get("when") or {}
        require(isinstance(when, dict), f"{at}.when must be a mapping like {{tags: [health]}}")
        _unknown(when, {"tags", "sources", "purposes"}, f"{at}.when")
        tags, sources, purposes = (
            tuple(map(str, _list(when.get(k), f"{at}.when.{k}"))) for k in ("tags", "sources", "purposes")
        )
        controls = _controls(spec.get("controls") or {}, f"{at}.controls", _number, _list, _unknown, UNITS)
        parsed.append(RiskClass(str(name), tags, sources, purposes, controls))
    default = data.get("default")
    names = [c.name for c in parsed]
    require(
        default is None or str(default) in names,
        f"{where}: risk.default={default!r} names no class; choose one of {', '.join(names) or '(none listed)'}",
    )
    return RiskPolicy(tuple(parsed), None if default is None else str(default))


def _controls(data, at: str, number, listed, unknown, units) -> Controls:
    require(isinstance(data, dict), f"{at} must be a mapping like {{approvals: 2, encryption: true}}")
    unknown(data, {"max_epsilon", "units", "audit", "approvals", "encryption", "monitoring", "max_fairness_gap"}, at)
    out: dict = {}
    if data.get("max_epsilon") is not None:
        out["max_epsilon"] = number(data["max_epsilon"], f"{at}.max_epsilon", delta=False)
    if data.get("units") is not None:
        values = tuple(map(str, listed(data["units"], f"{at}.units")))
        bad = [v for v in values if v not in units]
        require(not bad, f"{at}.units has {bad[0]!r}; choose from {', '.join(units)}" if bad else "")
        out["units"] = values
    if data.get("audit") is not None:
        require(data["audit"] in AUDITS, f"{at}.audit={data['audit']!r}; choose one of {', '.join(AUDITS)}")
        out["audit"] = str(data["audit"])
    if data.get("approvals") is not None:
        n = data["approvals"]
        require(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0,
            f"{at}.approvals must be a whole number of approvers, got {n!r}",
        )
        out["approvals"] = n
    for key in ("encryption", "monitoring"):
        if key in data:
            require(isinstance(data[key], bool), f"{at}.{key} must be true or false, got {data[key]!r}")
            out[key] = data[key]
    if data.get("max_fairness_gap") is not None:
        gap = data["max_fairness_gap"]
        require(
            isinstance(gap, (int, float)) and not isinstance(gap, bool) and 0 <= gap <= 1,
            f"{at}.max_fairness_gap must be an accuracy gap between 0 and 1, got {gap!r}",
        )
        out["max_fairness_gap"] = float(gap)
    return Controls(**out)
