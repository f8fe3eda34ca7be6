"""Policy as code: rules a privacy officer sets for the sources a project trains on.

A YAML file (``.privtrain/policy.yaml`` beside the ledger, or ``ledger.policy=PATH``) says, per source or
tag, the largest ε and δ per run and in total, the recipes and units allowed, and whether non-private
runs, inferred schemas, unscanned data or non-DP synthesizers are forbidden. Every run is checked when
it is planned, before any row is read or anything is charged; the policy's hash goes into every ledger
entry, and a new or changed policy is itself a chained entry. See docs/policy.md.
"""

from privtrain.policy.check import (
    Evaluation,
    Finding,
    RunFacts,
    check_charges,
    check_ledger,
    check_run,
    classify,
    ledger_problem,
    run_findings,
)
from privtrain.policy.file import POLICY_NAME, Policy, Rule, beside, find, load
from privtrain.policy.governing import evaluate, source_name

__all__ = [
    "Evaluation",
    "Finding",
    "POLICY_NAME",
    "Policy",
    "Rule",
    "RunFacts",
    "beside",
    "check_charges",
    "check_ledger",
    "classify",
    "check_run",
    "evaluate",
    "find",
    "ledger_problem",
    "load",
    "run_findings",
    "source_name",
]
