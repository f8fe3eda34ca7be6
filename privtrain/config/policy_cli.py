"""``privtrain policy check [PATH]`` and ``privtrain policy explain RECIPE [overrides]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from privtrain.errors import UserError

if TYPE_CHECKING:
    from pathlib import Path


def _policy_path(explicit: str | None, overrides: Sequence[str] = ()) -> Path:
    from privtrain import ledger, policy

    named = explicit or next((o.split("=", 1)[1] for o in overrides if o.startswith("ledger.policy=")), None)
    overridden = next((o.split("=", 1)[1] for o in overrides if o.startswith("ledger.path=")), None)
    location = overridden or ledger.default_path()
    path = policy.find(named, location)
    if path is None:
        raise UserError(
            f"no policy: none beside the ledger ({location}) and none named; write .privtrain/"
            f"{policy.POLICY_NAME}, or name one (privtrain policy check PATH, privtrain policy explain "
            "--policy PATH RECIPE); see docs/policy.md."
        )
    return path


def cmd_check(args: argparse.Namespace) -> int:
    from privtrain import policy

    p = policy.load(_policy_path(args.path))
    print(f"policy {p.path}: ok (sha256 {p.sha256[:12]}), {len(p.rules)} rule(s)")
    for name, tags in p.source_tags.items():
        print(f"  source {name}: tags {', '.join(tags) or '-'}")
    for r in p.rules:
        demands = [
            k
            for k, v in vars(r).items()
            if k not in ("name", "tags", "sources", "total_delta") and v not in (None, False, ())
        ]
        print(f"  rule {r.name!r} on {r.scope()}: {', '.join(demands) or 'no demands'}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from privtrain import config, policy
    from privtrain.config.facts import run_facts

    overrides = list(args.overrides)
    p = policy.load(_policy_path(args.policy, overrides))
    settings = config.settings(args.recipe, config.compose(args.recipe, overrides))
    facts = run_facts(settings)
    target = "set when the noise is calibrated" if facts.target_epsilon is None else f"{facts.target_epsilon:g}"
    print(f"policy {p.path} (sha256 {p.sha256[:12]})")
    recorded = _recorded_provenance(overrides, settings.ledger.path, facts.source)
    evaluation = policy.Evaluation(p, facts, recorded)
    print(
        f"run: {facts.recipe} on source {facts.source!r}, tags {', '.join(sorted(evaluation.tags())) or '-'}, "
        f"{'private' if facts.private else 'NOT private'}, units {', '.join(facts.units)}, target ε {target}"
    )
    print(
        f"purpose {facts.purpose or '(not stated: run.purpose)'}, region {facts.region or '(not stated: site.region)'}"
        + (f", clients in {', '.join(sorted(set(facts.node_regions)))}" if facts.node_regions else "")
        + "; "
        + (
            f"source provenance: {recorded.describe()} (ledger entry {recorded.entry})"
            if recorded is not None
            else "source provenance: none recorded (privtrain ledger provenance set)"
        )
    )
    risk = evaluation.risk
    print(
        risk.line()
        if risk is not None
        else "risk class: none (the policy has no class for this run)"
        if p.risk is not None
        else "risk class: the policy defines no risk classes"
    )
    findings = evaluation.findings
    if not findings:
        print("no rule covers this source: the policy allows the run")
    for f in findings:
        print(f"  {f.line()}")
    failed = [f for f in findings if not f.ok]
    print(
        "verdict: "
        + (
            f"refused by rule {failed[0].rule!r}"
            if failed
            else "allowed so far; the exact ε per unit, the total, and the rules of any source that shares "
            "rows with this table are checked when the run is planned (privtrain run ... --dry-run)"
        )
    )
    return 1 if failed else 0


def _recorded_provenance(overrides: list[str], path: str | None, source: str):
    """The provenance the project's ledger records for ``source`` (None: no ledger yet, or none recorded)."""
    from privtrain import ledger

    try:
        return ledger.open(path, create=False).provenance(source)
    except UserError:
        return None  # no ledger yet: nothing recorded


def register(subparsers) -> None:
    p = subparsers.add_parser("policy", help="check a policy file, or explain its rules for a planned run")
    sub = p.add_subparsers(dest="policy_command", metavar="COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    c = sub.add_parser("check", help="validate a policy file (default: the project's .privtrain/policy.yaml)")
    c.add_argument("path", nargs="?", default=None)
    c.set_defaults(func=cmd_check)
    e = sub.add_parser(
        "explain",
        help="which rules apply to a planned run, and whether it would pass",
        epilog="example: privtrain policy explain dp_sgd privacy.target_epsilon=3",
    )
    e.add_argument("--policy", default=None, help="a policy file (default: ledger.policy, then the project's)")
    e.add_argument("recipe")
    e.add_argument("overrides", nargs=argparse.REMAINDER)
    e.set_defaults(func=cmd_explain)
