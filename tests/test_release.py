"""privtrain release: a run is marked releasable only when policy, PII gate, audit and artifacts all pass."""

from __future__ import annotations

import json

import pytest
from ledger_helpers.db import tamper

import privtrain
from privtrain import ledger
from privtrain.artifacts.release import MANIFEST, _pii_gate
from privtrain.cli import main
from tests.conftest import TINY

POLICY = "version: 1\nrules:\n  - name: every-source\n    max_epsilon_per_run: 5\n"


def _run(tmp_path, ledger_path, policy: str | None = POLICY, *extra):
    if policy is not None:
        (ledger_path.parent / "policy.yaml").write_text(policy)
    return privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=2", *extra], output_dir=tmp_path / "run")


def test_a_clean_run_is_released_with_a_manifest_the_ledger_chains(tmp_path, ledger_path, capsys):
    result = _run(tmp_path, ledger_path)
    assert main(["release", str(result.output_dir)]) == 0
    out = capsys.readouterr().out
    assert "pass  policy: checked against policy.yaml" in out and "releasable: manifest" in out
    manifest = json.loads((result.output_dir / MANIFEST).read_text())
    book = ledger.open(ledger_path)
    assert manifest["releasable"] is True and manifest["run_id"] == result.ledger["entry"]
    assert set(manifest["artifacts"]) >= {"model_card.md", "checkpoint.pt", "run.json"}
    assert manifest["policy"]["sha256"] == book.policy()["sha256"]
    assert [g["name"] for g in manifest["gates"]] == ["artifacts", "ledger", "policy", "PII gate"]
    assert manifest["ledger"]["head_entry"] == book.head()[0] - 1  # the release entry came after the manifest
    assert str(tmp_path) not in (result.output_dir / MANIFEST).read_text()  # no absolute paths
    # the manifest is itself covered: editing it is caught by privtrain verify
    assert main(["verify", str(result.output_dir)]) == 0
    (result.output_dir / MANIFEST).write_text(json.dumps(dict(manifest, releasable="yes")))
    assert main(["verify", str(result.output_dir)]) == 1
    assert main(["release", str(result.output_dir)]) == 2  # released once; not again


def test_an_edited_artifact_blocks_the_release_and_nothing_is_written(tmp_path, ledger_path, capsys):
    result = _run(tmp_path, ledger_path)
    card = result.output_dir / "model_card.md"
    card.write_text(card.read_text().replace("differential privacy", "perfect privacy"))
    entries = len(ledger.open(ledger_path).entries())
    assert main(["release", str(result.output_dir)]) == 2  # refused before any gate: these are not the run's files
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert (
        "privtrain release refused" in captured.err
        and "model_card.md (edited since the ledger recorded it)" in captured.err
        and "nothing was written" in captured.err
    )
    assert not (result.output_dir / MANIFEST).exists() and len(ledger.open(ledger_path).entries()) == entries


def test_a_policy_changed_since_the_run_blocks_the_release(tmp_path, ledger_path, capsys):
    result = _run(tmp_path, ledger_path)
    (ledger_path.parent / "policy.yaml").write_text(POLICY.replace("5", "4"))
    assert main(["release", str(result.output_dir)]) == 1  # edited, not yet recorded by any run
    assert "FAIL  policy: policy.yaml (sha256" in capsys.readouterr().out
    privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=2"], output_dir=tmp_path / "later")  # records it
    assert main(["release", str(result.output_dir)]) == 1  # in force now, but not what this run was checked on
    assert "FAIL  policy: the run was checked against another policy" in capsys.readouterr().out


def test_a_damaged_ledger_blocks_the_release(tmp_path, ledger_path, capsys):
    result = _run(tmp_path, ledger_path, None)
    tamper(str(ledger_path), "UPDATE entries SET epsilon = epsilon / 2 WHERE status = 'committed'")
    assert main(["release", str(result.output_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  ledger: the ledger does not verify" in out and "pass  policy: no policy governs" in out


@pytest.mark.slow
def test_an_audit_the_policy_requires_must_be_done_first(tmp_path, ledger_path, capsys):
    result = _run(tmp_path, ledger_path, POLICY + "    require_audit: true\n")
    assert main(["release", str(result.output_dir)]) == 1
    assert "FAIL  audit: the policy requires an audit" in capsys.readouterr().out
    from privtrain.audit import audit_run

    audit_run(result.output_dir, shadow_models=0)
    assert main(["release", str(result.output_dir)]) == 0
    assert "pass  audit: audited, no red flag" in capsys.readouterr().out


def test_the_pii_gate_needs_every_finding_dropped_or_declared():
    email = {"column": "contact", "kind": "email", "reason": "values look like e-mail addresses"}
    assert not _pii_gate({"scanned": True, "findings": [email], "allowed": []}, required=False).ok
    declared = _pii_gate({"scanned": True, "findings": [email], "allowed": ["contact"]}, required=True)
    assert declared.ok and "declared: contact" in declared.detail
    assert not _pii_gate(None, required=True).ok and _pii_gate(None, required=False).ok
    assert not _pii_gate({"scanned": False}, required=True).ok


def test_a_declared_identifier_is_named_in_the_release(tmp_path, ledger_path, capsys):
    from test_pii import TINY as PII_TINY
    from test_pii import _csv, _identifiers, _table

    args = _csv(_table({"contact": _identifiers("email")}), tmp_path / "people.csv")
    (ledger_path.parent / "policy.yaml").write_text("rules:\n  - name: scan\n    require_pii_scan: true\n")
    result = privtrain.run("dp_sgd", [*args, "dataset.pii.allow=[contact]", *PII_TINY], output_dir=tmp_path / "run")
    assert main(["release", str(result.output_dir)]) == 0
    assert "pass  PII gate: scanned, no undeclared identifier; declared: contact" in capsys.readouterr().out
    gates = {g["name"]: g for g in json.loads((result.output_dir / MANIFEST).read_text())["gates"]}
    assert gates["PII gate"]["ok"] and "contact" in gates["PII gate"]["detail"]
