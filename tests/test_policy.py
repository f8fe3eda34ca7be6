"""Policy as code: rules by source and tag, checked before any row is read, recorded in the ledger."""

from __future__ import annotations

import re
import textwrap

import pytest

import privtrain
from privtrain import ledger
from privtrain.cli import main
from privtrain.errors import UserError

FAST = ["recipe.epochs=1", "recipe.progress=false"]
HEALTH = """
version: 1
sources:
  digits: {tags: [health]}
rules:
  - name: health-limits
    when: {tags: [health]}
    max_epsilon_per_run: 2
    max_epsilon_total: 4
    forbid_non_private: true
    forbid_inferred_schema: true
    recipes: [dp_sgd, synthetic]
    dp_synthesizers_only: true
    require_pii_scan: true
"""


def _policy(ledger_path, text: str = HEALTH):
    path = ledger_path.parent / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _entries(ledger_path):
    return ledger.open(ledger_path).entries() if ledger_path.exists() else []


def test_a_run_over_the_per_run_limit_is_refused_before_its_file_is_read(tmp_path, ledger_path):
    _policy(ledger_path, HEALTH.replace("digits: {tags: [health]}", "patients: {tags: [health]}"))
    missing = tmp_path / "patients.csv"  # never written: a refusal that came after reading it would say so
    with pytest.raises(UserError, match=r"rule 'health-limits' \(tag health\).*ε ≤ 2 per run.*target ε=3"):
        privtrain.run(
            "dp_sgd", ["dataset=csv", f"dataset.path={missing}", "dataset.target=y", "privacy.target_epsilon=3", *FAST]
        )
    assert _entries(ledger_path) == []  # nothing charged, not even the policy entry


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["privacy=none", "ledger.allow_non_private=true"], "no non-private runs"),
        (["privacy.target_epsilon=1", "reproducible_noise=true"], "no non-private runs"),  # void noise: ε = ∞
        (["privacy.target_epsilon=1", "dataset.infer_schema=true"], "no inferred schemas"),
    ],
)
def test_forbidden_kinds_of_run_are_refused(ledger_path, overrides, match):
    path = _policy(ledger_path)
    with pytest.raises(UserError, match=match) as err:
        privtrain.run("dp_sgd", [*overrides, *FAST])
    assert str(path.resolve()) in str(err.value)  # the refusal names the file
    assert _entries(ledger_path) == []


def test_recipes_and_synthesizers_are_governed(ledger_path):
    _policy(ledger_path)
    with pytest.raises(UserError, match=r"recipes dp_sgd, synthetic, but this run is federated"):
        privtrain.run("federated", ["dataset=digits", "fl.rounds=1"])
    _policy(ledger_path, HEALTH.replace("forbid_non_private: true", "forbid_non_private: false"))
    with pytest.raises(UserError, match="DP synthesizers only.*a non-DP synthesizer"):
        privtrain.run("synthetic", ["dataset=digits", "ledger.allow_non_private=true"])
    with pytest.raises(UserError, match="a PII scan"):
        privtrain.run(
            "synthetic", ["dataset=digits", "synth=dp_gaussian_copula", "synth.epsilon=1", "synth.pii_check=false"]
        )
    assert _entries(ledger_path) == []


def test_a_run_can_add_tags_but_other_sources_are_untouched(ledger_path):
    _policy(ledger_path)
    with pytest.raises(UserError, match="health-limits"):
        privtrain.run("dp_sgd", ["dataset=wine", "dataset.tags=[health]", "privacy.target_epsilon=3", *FAST])
    result = privtrain.run("dp_sgd", ["dataset=wine", "privacy.target_epsilon=3", *FAST])  # no tag: no rule
    assert result.guarantee.epsilon == pytest.approx(3.0, rel=0.01)


def test_the_total_becomes_the_sources_budget_and_is_enforced(ledger_path):
    _policy(ledger_path)
    first = privtrain.run("dp_sgd", ["privacy.target_epsilon=1.5", *FAST])
    book = ledger.open(ledger_path)
    budget = book.budget("digits")
    assert (budget.epsilon, budget.delta) == (4.0, 1e-5)  # written with the first reservation
    assert first.ledger["policy"]["result"] == "passed" and first.ledger["policy"]["file"] == "policy.yaml"
    with pytest.raises(UserError, match="over budget"):
        for _ in range(3):  # 1.5 + 1.5 + 1.5 cannot fit 4 under any composition
            privtrain.run("dp_sgd", ["privacy.target_epsilon=1.5", *FAST])
    assert book.filter_epsilon("digits") <= 4.0


def test_a_ledger_budget_above_the_policys_total_is_refused(ledger_path):
    ledger.open(ledger_path).set_budget("digits", "example", 10, 1e-5)
    _policy(ledger_path)
    with pytest.raises(UserError, match=r"ledger budget of ε=10, above the policy's total of ε=4; lower it"):
        privtrain.run("dp_sgd", ["privacy.target_epsilon=1", *FAST])


def test_a_subset_of_a_governed_source_is_governed(tmp_path, ledger_path):
    from test_sources import _csv, _digits

    privtrain.run("dp_sgd", ["privacy.target_epsilon=1", *FAST])  # the ledger now knows digits' rows
    _policy(ledger_path, HEALTH.replace("max_epsilon_total: 4", "max_epsilon_total: 40"))
    subset = _csv(_digits().sample(frac=0.8, random_state=0), tmp_path / "scans.csv")  # another name, same people
    before = len(_entries(ledger_path))
    with pytest.raises(
        UserError,
        match=r"source 'digits' \(charged because .*rows.*\).*ε ≤ 2 per run.*planned ε=2\.[45].*Nothing was charged",
    ):
        privtrain.run("dp_sgd", [*subset, "privacy.target_epsilon=2.5", *FAST])
    assert len(_entries(ledger_path)) == before  # refused before the reservation: nothing written


def test_every_entry_names_the_policy_and_a_change_is_a_chained_entry(ledger_path):
    path = _policy(ledger_path)
    privtrain.run("dp_sgd", ["privacy.target_epsilon=1", *FAST])
    privtrain.run("dp_sgd", ["privacy.target_epsilon=1", *FAST])
    path.write_text(path.read_text().replace("max_epsilon_per_run: 2", "max_epsilon_per_run: 1.5"))
    privtrain.run("dp_sgd", ["privacy.target_epsilon=1", *FAST])
    book = ledger.open(ledger_path)
    policies = [e for e in book.entries() if e.status == "policy"]
    assert len(policies) == 2  # first seen, then changed; an unchanged policy adds nothing
    first, second = (p.detail["sha256"] for p in policies)
    assert first != second and policies[1].detail["replaces"] == first
    assert "max_epsilon_per_run: 1.5" in policies[1].detail["text"]
    runs = [e for e in book.entries() if e.status in ("reserved", "committed")]
    assert [e.detail.get("policy") for e in runs] == [first] * 4 + [second] * 2
    assert book.verify().ok


def test_no_policy_changes_nothing(ledger_path):
    result = privtrain.run("dp_sgd", ["privacy.target_epsilon=3", *FAST])
    assert "policy" not in result.ledger
    assert all("policy" not in e.detail for e in ledger.open(ledger_path).entries())


@pytest.mark.parametrize(
    "text,match",
    [
        ("rules:\n  - name: a\n    max_epsilon_per_rnu: 2\n", r"rule 'a': unknown key 'max_epsilon_per_rnu'"),
        ("rules:\n  - name: a\n    max_epsilon_per_run: abc\n", r"max_epsilon_per_run must be a number"),
        ("rules:\n  - name: a\n    units: [person]\n", r"units has 'person'; choose from example, client"),
        ("rules: [\n", r"not valid YAML"),
        ("rules:\n  - name: a\n  - name: a\n", r"two rules are named 'a'"),
    ],
)
def test_policy_check_gives_one_line_per_mistake(tmp_path, capsys, text, match):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and re.search(match, err)


def test_policy_explain_says_which_rules_apply_and_the_verdict(ledger_path, capsys):
    _policy(ledger_path)
    assert main(["policy", "explain", "dp_sgd", "privacy.target_epsilon=3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  rule 'health-limits' (tag health): ε ≤ 2 per run: privacy target ε=3" in out
    assert "pass  rule 'health-limits' (tag health): no non-private runs" in out
    assert "verdict: refused by rule 'health-limits'" in out
    assert main(["policy", "explain", "dp_sgd", "privacy.target_epsilon=1"]) == 0
    assert "verdict: allowed" in capsys.readouterr().out
    assert main(["policy", "explain", "dp_sgd", "dataset=wine"]) == 0
    assert "no rule covers this source" in capsys.readouterr().out
    assert _entries(ledger_path) == []  # explaining charges nothing


def test_dry_run_lists_the_policy_findings(ledger_path):
    _policy(ledger_path)
    result = privtrain.run("dp_sgd", ["privacy.target_epsilon=1", "ledger.plan_only=true"])
    assert result.dry_run and "policy policy.yaml" in result.ledger["plan"]
    assert "pass  rule 'health-limits'" in result.ledger["plan"]
    assert _entries(ledger_path) == []


def test_policy_commands_without_a_policy_say_how_to_give_one(ledger_path, capsys):
    assert main(["policy", "check"]) == 2
    err = capsys.readouterr().err
    assert "no policy: none beside the ledger" in err and "privtrain policy check PATH" in err
    assert main(["policy", "explain", "dp_sgd"]) == 2


def test_a_governed_ledger_cannot_shed_or_swap_its_policy(tmp_path, ledger_path):
    path = _policy(ledger_path, HEALTH.replace("max_epsilon_total: 4", "max_epsilon_total: 40"))
    privtrain.run("dp_sgd", ["privacy.target_epsilon=1", *FAST])  # the ledger records the policy
    lax = tmp_path / "lax.yaml"
    lax.write_text("rules: []\n")
    with pytest.raises(UserError, match=r"the project's policy .* governs this ledger; another policy"):
        privtrain.run("dp_sgd", ["privacy.target_epsilon=3", f"ledger.policy={lax}", *FAST])
    path.unlink()  # the policy file is gone: the ledger still names it
    with pytest.raises(UserError, match=r"governed by policy policy.yaml .* but this run finds no policy"):
        privtrain.run("dp_sgd", ["privacy.target_epsilon=3", *FAST])
    entries = len(_entries(ledger_path))
    _policy(ledger_path, "rules: []\n")  # lifting every rule is a recorded change
    assert privtrain.run("dp_sgd", ["privacy.target_epsilon=3", *FAST]).guarantee.epsilon > 2
    policies = [e for e in ledger.open(ledger_path).entries() if e.status == "policy"]
    assert len(policies) == 2 and policies[-1].detail["text"] == "rules: []\n" and len(_entries(ledger_path)) > entries


@pytest.mark.parametrize("privacy", ["privacy=central", "privacy=none"])
def test_federated_runs_that_charge_clients_meet_a_unit_rule_before_reading(ledger_path, privacy):
    _policy(ledger_path, "rules:\n  - name: examples-only\n    units: [example]\n")
    with pytest.raises(
        UserError,
        match=r"units example, but this run protects one client and one example\. "
        r"Nothing was read",
    ):
        privtrain.run("federated", [privacy, "ledger.allow_non_private=true", "fl.rounds=1"])
    assert _entries(ledger_path) == []
