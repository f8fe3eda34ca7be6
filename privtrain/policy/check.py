"""Evaluating a policy against a planned run, in two steps, both before anything is reserved or trained.

1. :func:`check_run` on what the config says (recipe, source name, tags, privacy mode, target ε, δ,
   schema, PII scan, synthesizer): before any row is read.
2. :func:`check_charges` on the ledger's charges (after the table is fingerprinted, before the
   reservation): each charged source's rules, with the exact planned ε and δ per unit. A table that
   shares rows with a governed source is charged to it, so its rules apply too. ``max_epsilon_total``
   becomes the source's ledger budget (a default budget, written atomically with the reservation),
   so the RDP filter enforces it under concurrency like any budget.

A refusal is one line naming the rule and the policy file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from privtrain.errors import UserError
from privtrain.policy.file import Policy, Rule
from privtrain.policy.risk import Classification


@dataclass(frozen=True)
class RunFacts:
    """What the config says about a run, as plain values (built at the config border)."""

    recipe: str
    source: str  # the name a policy uses: a built-in's name, the declared dataset.source, or the file's stem
    tags: tuple[str, ...] = ()  # dataset.tags: the run's own, added to the policy's tags for its source
    private: bool = True
    units: tuple[str, ...] = ("example",)
    target_epsilon: float | None = None  # known before any row is read (a target); else checked at step 2
    delta: float | None = None
    inferred_schema: bool = False
    pii_scan: bool = True  # the PII gate scans this dataset (a table, scanning not switched off)
    dp_synthesizer: bool | None = None  # synthetic recipe only
    purpose: str | None = None  # run.purpose: what the run is for (checked against a source's consent scope)
    region: str | None = None  # site.region: where the run executes (checked against a source's regions)
    node_regions: tuple[str, ...] = ()  # fl.regions: where simulated federated clients execute (same check)
    encrypted: bool = False  # a key is configured: checkpoints, synthetic rows and predictions are written encrypted
    monitoring: bool = False  # the run releases DP reference statistics for drift monitoring
    one_run_audit: bool = False  # audit.one_run.enabled: the run audits its own configuration first


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one demand: ``ok`` or not, and why, in words."""

    rule: str
    scope: str
    demand: str
    ok: bool
    why: str

    def line(self) -> str:
        return f"{'pass' if self.ok else 'FAIL'}  rule {self.rule!r} ({self.scope}): {self.demand}: {self.why}"


def run_findings(policy: Policy, facts: RunFacts) -> list[Finding]:
    """Every demand of every rule that covers the run's source, judged on the config alone."""
    out = []
    for rule in policy.rules_for(facts.source, facts.tags):
        out += list(_run_demands(rule, facts))
    risk = classify(policy, facts)
    if risk is not None:
        out += list(_class_demands(risk, facts))
    return out


def classify(policy: Policy, facts: RunFacts) -> Classification | None:
    """The run's risk class under the policy (None: the policy has no classes, or none matches)."""
    if policy.risk is None:
        return None
    return policy.risk.classify(facts.source, policy.tags_of(facts.source, facts.tags), facts.purpose)


def _class_demands(risk: Classification, f: RunFacts):
    """A risk class's controls that the config alone can judge; the rest are checked at admission or release."""
    c, scope = risk.controls, f"risk class {risk.name}: {'; '.join(risk.reasons)}"

    def judge(demand: str, ok: bool, why: str) -> Finding:
        return Finding(f"class {risk.name}", scope, demand, ok, why)

    if c.max_epsilon is not None or c.units is not None:
        yield judge(
            "a private run",
            f.private,
            "the run is differentially private" if f.private else "the run is not private (ε = ∞)",
        )
    if c.max_epsilon is not None and f.private and f.target_epsilon is not None:
        yield judge(
            f"ε ≤ {c.max_epsilon:g} per run",
            f.target_epsilon <= c.max_epsilon,
            f"privacy target ε={f.target_epsilon:g}",
        )
    if c.units is not None:
        bad = [u for u in f.units if u not in c.units]
        yield judge(f"units {', '.join(c.units)}", not bad, f"this run protects one {' and one '.join(f.units)}")
    if c.encryption:
        yield judge(
            "encrypted artifacts",
            f.encrypted,
            "a key is configured"
            if f.encrypted
            else 'no artifact key is configured (docs/governance.md, "Encrypted artifacts")',
        )
    if c.monitoring:
        yield judge(
            "drift monitoring",
            f.monitoring,
            "the run releases DP reference statistics"
            if f.monitoring
            else "the run releases no reference statistics (monitor.reference=true)",
        )
    if c.audit == "one_run":
        yield judge(
            "a one-run audit of the configuration",
            f.one_run_audit,
            "audit.one_run.enabled=true" if f.one_run_audit else "audit.one_run.enabled is false",
        )
    for demand in ("approvals", "audit", "max_fairness_gap"):
        if getattr(c, demand) not in (None, 0) and not (demand == "audit" and c.audit == "one_run"):
            yield judge(next(d for d in c.demands() if _names(d, demand)), True, "checked by privtrain release")


def _names(words: str, demand: str) -> bool:
    return {"approvals": "approval", "audit": "audit", "max_fairness_gap": "gap"}[demand] in words


def _run_demands(rule: Rule, f: RunFacts):
    def judge(demand: str, ok: bool, why: str) -> Finding:
        return Finding(rule.name, rule.scope(), demand, ok, why)

    if rule.recipes is not None:
        yield judge(f"recipes {', '.join(rule.recipes)}", f.recipe in rule.recipes, f"this run is {f.recipe}")
    if rule.units is not None:
        bad = [u for u in f.units if u not in rule.units]
        yield judge(f"units {', '.join(rule.units)}", not bad, f"this run protects one {' and one '.join(f.units)}")
    if rule.forbid_inferred_schema:
        yield judge(
            "no inferred schemas",
            not f.inferred_schema,
            "dataset.infer_schema=true reads bounds from the rows" if f.inferred_schema else "declared schema",
        )
    if rule.forbid_non_private:
        yield judge(
            "no non-private runs",
            f.private,
            "the run is differentially private" if f.private else "the run is not private (ε = ∞)",
        )
    if rule.require_pii_scan:
        yield judge(
            "a PII scan",
            f.pii_scan,
            "the dataset is scanned"
            if f.pii_scan
            else "this dataset is not scanned (not a table, or the scan is switched off)",
        )
    if rule.dp_synthesizers_only and f.recipe == "synthetic":
        yield judge(
            "DP synthesizers only",
            bool(f.dp_synthesizer),
            "a DP synthesizer" if f.dp_synthesizer else "a non-DP synthesizer (ε = ∞)",
        )
    if rule.max_epsilon_per_run is not None and f.private and f.target_epsilon is not None:
        yield judge(
            f"ε ≤ {rule.max_epsilon_per_run:g} per run",
            f.target_epsilon <= rule.max_epsilon_per_run,
            f"privacy target ε={f.target_epsilon:g}",
        )
    if rule.max_delta_per_run is not None and f.private and f.delta is not None:
        yield judge(f"δ ≤ {rule.max_delta_per_run:g} per run", f.delta <= rule.max_delta_per_run, f"δ={f.delta:g}")
    if rule.require_audit:
        yield judge("an audit before release", True, "checked by privtrain release")
    if rule.require_one_run_audit:
        yield judge(
            "a one-run audit of the configuration", True, "checked by privtrain release (audit.one_run.enabled=true)"
        )
    if rule.max_epsilon_total is not None:
        yield judge(
            f"ε ≤ {rule.max_epsilon_total:g} in total",
            True,
            "enforced as the source's ledger budget when the run is admitted",
        )
    if rule.require_registered_source:
        yield judge(
            "a registered or declared source",
            True,
            "checked when the ledger has compared the table with its registered sources",
        )


class Evaluation:
    """A policy, the run's facts, and every demand's verdict on them (for the plan, the card and the ledger)."""

    def __init__(self, policy: Policy, facts: RunFacts, provenance=None) -> None:
        """``provenance``: what the ledger records for the run's source (privtrain.ledger.consent.Provenance)."""
        from privtrain.policy import consent  # consent builds on this module's Finding

        self.policy, self.facts, self.provenance = policy, facts, provenance
        self.findings = run_findings(policy, facts) + consent.findings(policy, facts, provenance)

    def render(self) -> str:
        head = f"policy {self.policy.label} (sha256 {self.policy.sha256[:12]})"
        return "\n".join(
            [head, *(f"  {f.line()}" for f in self.findings)]
            if self.findings
            else [head + ": no rule covers this source"]
        )

    def card(self) -> dict:
        return {
            "file": self.policy.label,
            "sha256": self.policy.sha256,
            "result": "passed",
            "rules": [f.line() for f in self.findings],
        }

    def tags(self) -> set[str]:
        return self.policy.tags_of(self.facts.source, self.facts.tags)

    @property
    def risk(self) -> Classification | None:
        """The run's risk class (None: unclassified)."""
        return classify(self.policy, self.facts)


def check_run(policy: Policy | None, facts: RunFacts) -> None:
    """Step 1: refuse, with one line naming the rule and the file, a run the policy forbids on its config."""
    if policy is None:
        return
    failed = next((f for f in run_findings(policy, facts) if not f.ok), None)
    if failed is not None:
        raise UserError(_refusal(policy, failed, facts.source, "Nothing was read or charged"))


def check_charges(
    policy: Policy | None, charges, *, run_source: str, run_tags: tuple[str, ...], budget_of, purpose: str | None = None
) -> tuple:
    """Step 2: each charge against the rules of its source; returns the charges with the policy's hash and,
    where a rule caps the total, that cap as the default budget. ``budget_of(charge)`` is the ledger's budget
    for the charge's key (or None)."""
    if policy is None:
        return tuple(charges)
    out = []
    for c in charges:
        tags = run_tags if c.source_name == run_source else ()
        rules = policy.rules_for(c.source_name, tags)
        cap = None
        failed = _class_failure(policy, c, tags, purpose)
        if failed is not None:
            raise UserError(_refusal(policy, failed, c.source_name, "Nothing was charged", link=c.link))
        for rule in rules:
            failed = _charge_failure(rule, c)
            if failed is not None:
                raise UserError(_refusal(policy, failed, c.source_name, "Nothing was charged", link=c.link))
            if rule.max_epsilon_total is not None and (cap is None or rule.max_epsilon_total < cap[0]):
                cap = (rule.max_epsilon_total, rule.total_delta, rule.name)
        changes: dict[str, object] = {"policy": policy.sha256}
        if cap is not None:
            budget = budget_of(c)
            if budget is not None and budget.epsilon > cap[0] * (1 + 1e-9):
                raise UserError(
                    f"policy {policy.label}, rule {cap[2]!r}: {c.describe()} has a ledger budget of ε={budget.epsilon:g}, "
                    f"above the policy's total of ε={cap[0]:g}; lower it: privtrain ledger budget set "
                    f"{c.source_name} --unit {c.unit} --epsilon {cap[0]:g} --delta {budget.delta:g}"
                )
            if budget is None:
                default = c.default_budget
                if default is None or default[0] > cap[0]:
                    changes["default_budget"] = cap[:2]
        out.append(dataclasses.replace(c, **changes))
    return tuple(out)


def _class_failure(policy: Policy, c, tags, purpose: str | None) -> Finding | None:
    """The charged source's risk class against one charge: its ε cap and units (the purpose is the run's)."""
    if policy.risk is None:
        return None
    risk = policy.risk.classify(c.source_name, policy.tags_of(c.source_name, tags), purpose)
    if risk is None:
        return None
    controls, eps = risk.controls, float(c.epsilon)

    def fail(demand: str, why: str) -> Finding:
        return Finding(f"class {risk.name}", f"risk class {risk.name}: {'; '.join(risk.reasons)}", demand, False, why)

    if controls.units is not None and c.unit not in controls.units:
        return fail(f"units {', '.join(controls.units)}", f"the run charges the {c.unit} level")
    if controls.max_epsilon is not None and not eps <= controls.max_epsilon * (1 + 1e-6):
        return fail(f"ε ≤ {controls.max_epsilon:g} per run", f"the run's planned ε={eps:.4g} at the {c.unit} level")
    return None


def _charge_failure(rule: Rule, c) -> Finding | None:
    def fail(demand: str, why: str) -> Finding:
        return Finding(rule.name, rule.scope(), demand, False, why)

    eps, private = float(c.epsilon), math.isfinite(float(c.epsilon))
    if rule.require_registered_source and getattr(c.rows, "standing", None) == "unregistered":
        return fail(
            "a registered or declared source",
            "this table is not a registered source, holds no known source's people by content, and declares "
            "no source; declare whose people these are (dataset.source=NAME, or dataset.derived_from=NAME for "
            "a table made from a known source), or register it first (privtrain ledger budget set FILE "
            "--source NAME ...)",
        )
    if rule.units is not None and c.unit not in rule.units:
        return fail(f"units {', '.join(rule.units)}", f"the run charges the {c.unit} level")
    if rule.forbid_non_private and not private:
        return fail("no non-private runs", "the run is not private (ε = ∞)")
    if rule.max_epsilon_per_run is not None and eps > rule.max_epsilon_per_run * (1 + 1e-6):
        return fail(f"ε ≤ {rule.max_epsilon_per_run:g} per run", f"the run's planned ε={eps:.4g} at the {c.unit} level")
    if rule.max_delta_per_run is not None and private and float(c.delta) > rule.max_delta_per_run * (1 + 1e-9):
        return fail(f"δ ≤ {rule.max_delta_per_run:g} per run", f"the run's δ={float(c.delta):g}")
    return None


def _refusal(policy: Policy, f: Finding, source: str, consequence: str, link: str | None = None) -> str:
    why = f" (charged because {link})" if link else ""
    return (
        f"policy {policy.path}, rule {f.rule!r} ({f.scope}) refuses this run on source {source!r}{why}: "
        f"{f.demand}, but {f.why}. {consequence}; change the run, or the policy "
        f"(privtrain policy explain shows every rule)."
    )


def ledger_problem(policy: Policy | None, book, *, anchor: bool = True) -> str | None:
    """Why ``book`` is not the ledger the policy pins (``ledger: {id, anchor}``), or None when it is (or
    nothing is pinned). A run on a throwaway ledger would get fresh budgets and a release that names the
    project's policy; the pin tells that ledger from the project's. A copy of the project's file shares its
    identity: the anchor shows a copy made before the anchor was published, not a fork made after it.

    Args:
        anchor: also check that the ledger extends the pinned head (a full walk of the chain).
    """
    if policy is None or policy.ledger_id is None:
        return None
    here = book.identity()
    if here != policy.ledger_id:
        return (
            f"policy {policy.label} pins the project's ledger (id {policy.ledger_id[:12]}), but the ledger "
            f"{book.location} is {'empty' if here is None else 'another (id ' + here[:12] + ')'}"
        )
    if anchor and policy.ledger_anchor is not None:
        report = book.verify(head=policy.ledger_anchor)
        if not report.ok:
            return (
                f"the ledger {book.location} does not extend the head {policy.ledger_anchor[:24]}… that policy "
                f"{policy.label} pins: {report.problem}"
            )
    return None


def check_ledger(policy: Policy | None, book) -> None:
    """Refuse, before any row is read, a run whose ledger is not the one its policy pins (identity only).

    Raises:
        UserError: one line naming the policy and the fix; nothing is read or charged.
    """
    problem = ledger_problem(policy, book, anchor=False)
    if problem is not None:
        raise UserError(
            f"{problem}: run with the project's ledger (ledger.path, $PRIVTRAIN_LEDGER), or change the "
            "policy's `ledger:`. Nothing was read or charged."
        )
