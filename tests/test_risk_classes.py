"""Risk classes: a policy sorts runs into classes, and each class's controls are checked like rules."""

from __future__ import annotations

import pytest
from conftest import TINY
from test_provenance import rescaled_copy
from test_sources import _csv, _digits

import privtrain
from privtrain import ledger
from privtrain.errors import UserError
from privtrain.policy import Evaluation, RunFacts, check_run, load

POLICY = """
version: 1
sources:
  patients: {tags: [health]}
risk:
  default: low
  classes:
    high:
      when: {tags: [health], purposes: [diagnosis]}
      controls: {max_epsilon: 3, units: [example], audit: one_run, approvals: 2, encryption: true,
                 monitoring: true, max_fairness_gap: 0.1}
    low:
      controls: {}
"""


def _policy(tmp_path, text=POLICY):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load(path)


def test_first_matching_class_applies_with_its_reasons(tmp_path):
    p = _policy(tmp_path)
    high = Evaluation(p, RunFacts("dp_sgd", "patients", target_epsilon=2.0)).risk
    assert high.name == "high" and high.reasons == ("tag health",)
    assert high.controls.approvals == 2 and high.controls.encryption
    by_purpose = Evaluation(p, RunFacts("dp_sgd", "survey", purpose="diagnosis")).risk
    assert by_purpose.name == "high" and by_purpose.reasons == ("purpose diagnosis",)
    low = Evaluation(p, RunFacts("dp_sgd", "survey", purpose="marketing")).risk
    assert low.name == "low" and low.reasons == ("the policy's default class",)


def test_high_class_refuses_a_run_missing_its_controls_in_one_line(tmp_path):
    p = _policy(tmp_path)
    with pytest.raises(UserError) as err:
        check_run(p, RunFacts("dp_sgd", "patients", target_epsilon=5.0))
    assert "class high" in str(err.value) and "ε ≤ 3" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="encrypted artifacts"):
        check_run(p, RunFacts("dp_sgd", "patients", target_epsilon=2.0))
    with pytest.raises(UserError, match="a private run"):
        check_run(p, RunFacts("dp_sgd", "patients", private=False, encrypted=True, monitoring=True, one_run_audit=True))
    check_run(
        p, RunFacts("dp_sgd", "patients", target_epsilon=2.0, encrypted=True, monitoring=True, one_run_audit=True)
    )  # every control the config can show is there
    check_run(p, RunFacts("dp_sgd", "survey", target_epsilon=9.0))  # low: no controls


@pytest.mark.parametrize(
    "risk, message",
    [
        ("{classes: {high: {controls: {approvals: two}}}}", "approvals must be a whole number"),
        ("{classes: {high: {controls: {audit: lira}}}}", "audit='lira'"),
        ("{classes: {high: {controls: {encrypt: true}}}}", "unknown key 'encrypt'"),
        ("{default: medium, classes: {high: {}}}", "risk.default='medium' names no class"),
        ("{classes: {high: {when: {tag: [x]}}}}", "unknown key 'tag'"),
        ("{classes: {high: {controls: {max_fairness_gap: 5}}}}", "between 0 and 1"),
    ],
)
def test_a_mistake_in_the_risk_section_is_one_line(tmp_path, risk, message):
    with pytest.raises(UserError, match=message):
        _policy(tmp_path, f"version: 1\nrisk: {risk}\n")


def test_a_renamed_rescaled_copy_of_a_high_risk_source_is_held_to_its_classs_cap(ledger_path, tmp_path):
    """The copy's own name matches no class, so the config check passes it; the charge to the source whose people
    it holds meets that source's class, with the exact planned ε, and nothing is charged."""
    (ledger_path.parent / "policy.yaml").write_text(
        "version: 1\nsources:\n  scans: {tags: [health]}\n"
        "risk:\n  classes:\n    high: {when: {tags: [health]}, controls: {max_epsilon: 3}}\n"
    )
    scans = [*TINY, *_csv(_digits(), tmp_path / "scans.csv"), "dataset.source=scans"]
    privtrain.run("dp_sgd", [*scans, "privacy.target_epsilon=2"], output_dir=tmp_path / "first")
    with pytest.raises(UserError, match="class high.*ε ≤ 3 per run, but privacy target ε=5. Nothing was read"):
        privtrain.run("dp_sgd", [*scans, "privacy.target_epsilon=5"], output_dir=tmp_path / "direct")
    charged = [e.hash for e in ledger.open().entries()]
    with pytest.raises(UserError) as refused:
        privtrain.run(
            "dp_sgd", [*TINY, *rescaled_copy(tmp_path), "privacy.target_epsilon=5"], output_dir=tmp_path / "copy"
        )
    message = str(refused.value)
    assert "class high" in message and "source 'scans' (charged because" in message and "ε ≤ 3" in message
    assert "Nothing was charged" in message and "\n" not in message
    assert [e.hash for e in ledger.open().entries()][: len(charged)] == charged
    assert not [e for e in ledger.open().entries()[len(charged) :] if e.status in ("reserved", "committed")]
