"""privtrain approve, and the release gates a risk class adds: approvals bound to the run's files and policy,
an audit, encryption, monitoring and a fairness gap, each refusal one line naming the class and control."""

from __future__ import annotations

import json

import pytest

from privtrain import ledger
from privtrain.artifacts import approvals, evidence, release_gates
from privtrain.artifacts.record import RunRecord
from privtrain.artifacts.release import MANIFEST
from privtrain.artifacts.verify import run_evidence
from privtrain.cli import main
from privtrain.policy.risk import Classification, Controls
from tests.governance_runs import LAUNCHER, as_user, build, class_policy, copy

POLICY = class_policy("high", "{approvals: 2, max_epsilon: 3}")
STRICT = class_policy("high", "{approvals: 2, audit: membership, max_fairness_gap: 0.1}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("approvals"), POLICY)


@pytest.fixture(scope="module")
def built_strict(tmp_path_factory):
    return build(tmp_path_factory.mktemp("strict"), STRICT)


@pytest.fixture
def project(built, tmp_path, monkeypatch):
    return copy(built, tmp_path, monkeypatch)


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def _approve(capsys, p, name, *extra):
    return _cli(capsys, "approve", str(p / "run"), "--as", name, "--ledger", str(p / "ledger.db"), *extra)


def _release(capsys, p, *extra):
    return _cli(capsys, "release", str(p / "run"), "--ledger", str(p / "ledger.db"), *extra)


def _entries(p) -> int:
    return len(ledger.open(p / "ledger.db").entries())


def _one_line(code, text, expected, *words):
    assert code == expected, text
    assert text.count("\n") == 1, text  # one line, no traceback
    for w in words:
        assert w in text, text


def test_two_distinct_approvals_then_the_release_passes_and_lists_them(project, monkeypatch, capsys):
    as_user(monkeypatch, "alice")
    code, text = _approve(capsys, project, "alice", "--comment", "reviewed the card")
    assert code == 0 and "approved run" in text and "as alice (login)" in text
    before = _entries(project)
    code, text = _release(capsys, project)
    assert code == 1 and "FAIL  class high: approvals: 1 of 2 distinct approvals" in text and "(alice)" in text
    assert not (project / "run" / MANIFEST).exists() and _entries(project) == before  # nothing written
    code, text = _approve(capsys, project, "alice")  # a second approval by the same person counts once
    _one_line(code, text, 2, "alice already approved these files", "counts once", "nothing was written")
    assert _entries(project) == before
    as_user(monkeypatch, "bob")
    assert _approve(capsys, project, "bob")[0] == 0
    code, text = _release(capsys, project)
    assert code == 0, text
    assert (
        "pass  class high: approvals: 2 of 2 distinct approvals of these files under this policy (alice, bob)" in text
    )
    manifest = json.loads((project / "run" / MANIFEST).read_text())
    assert [a["approver"] for a in manifest["approvals"]] == ["alice", "bob"]
    assert manifest["approvals"][0]["comment"] == "reviewed the card"
    assert manifest["risk_class"]["name"] == "high" and manifest["risk_class"]["reasons"] == ["source digits"]
    assert "2 approvals before release" in manifest["risk_class"]["controls"]
    book = ledger.open(project / "ledger.db")
    chained = book.decisions("approval")
    assert [e.detail["approver"] for e in chained] == ["alice", "bob"] and book.verify().ok
    assert chained[0].detail["policy"] == manifest["policy"]["sha256"]  # bound to the policy in force


def test_as_must_name_the_caller_and_the_launcher_cannot_approve(project, monkeypatch, capsys):
    before = _entries(project)
    as_user(monkeypatch, "alice")
    code, text = _approve(capsys, project, "bob")
    _one_line(code, text, 2, "--as 'bob' is not you", "login 'alice'", "nothing was written")
    as_user(monkeypatch, LAUNCHER)
    code, text = _approve(capsys, project, LAUNCHER)
    _one_line(code, text, 2, f"{LAUNCHER} launched run", "second person's review", "nothing was written")
    assert _entries(project) == before


def test_an_edited_file_refuses_the_approval_and_voids_those_given(project, monkeypatch, capsys):
    for name in ("alice", "bob"):
        as_user(monkeypatch, name)
        assert _approve(capsys, project, name)[0] == 0
    metrics = project / "run" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"accuracy"', '"accuracy_"'))
    before = _entries(project)
    as_user(monkeypatch, "carol")
    code, text = _approve(capsys, project, "carol")
    _one_line(code, text, 2, "privtrain approve refused", "metrics.json (edited since the ledger recorded it)")
    code, text = _release(capsys, project)
    _one_line(code, text, 2, "privtrain release refused", "metrics.json (edited")
    assert not (project / "run" / MANIFEST).exists() and _entries(project) == before


def test_approvals_of_files_re_chained_since_are_not_counted(project, monkeypatch, capsys):
    """An approval covers the files as chained when given: a later command that re-chains the run's files
    (as an audit does with its report and the card) leaves the run intact but the approvals void."""
    for name in ("alice", "bob"):
        as_user(monkeypatch, name)
        assert _approve(capsys, project, name)[0] == 0
    run_dir = project / "run"
    code, text = _cli(
        capsys, "audit", str(run_dir), "--shadow-models", "0", "--no-card", "--ledger", str(project / "ledger.db")
    )
    assert code == 0, text  # the audit re-chains audit.json and its ROC figure
    assert _cli(capsys, "verify", str(run_dir), "--ledger", str(project / "ledger.db"))[0] == 0  # still intact
    code, text = _release(capsys, project)
    assert code == 1 and "FAIL  class high: approvals: 0 of 2" in text, text
    assert "alice (entry" in text and "approved other files (re-chained since)" in text
    assert not (run_dir / MANIFEST).exists()
    assert _approve(capsys, project, "bob")[0] == 0  # approving the new files counts again
    as_user(monkeypatch, "alice")
    assert _approve(capsys, project, "alice")[0] == 0
    assert _release(capsys, project)[0] == 0


def test_an_approval_chained_past_approve_in_anothers_name_is_not_counted(project, monkeypatch, capsys):
    """The attacker's test: a ledger writer calls the API directly and records approvals by alice and bob
    while logged in as mallory. The chain accepts the entries (the writer may append), but each entry is
    stamped with the writer's login, which is not the approver it names."""
    as_user(monkeypatch, "mallory")
    run_dir = project / "run"
    book, rec = run_evidence(run_dir, str(project / "ledger.db"))
    policy_sha = book.policy()["sha256"]
    for name in ("alice", "bob"):
        book.record_decision(
            rec.run_id,
            approvals.STATUS,
            {
                "approver": name,
                "identity": "login",
                "artifacts": approvals.files_digest(rec.hashes),
                "files": rec.hashes,
                "policy": policy_sha,
                "comment": "",
            },
        )
    valid, void = approvals.counted(book, rec.run_id, rec.hashes, policy_sha)
    assert valid == [] and len(void) == 2 and "was recorded by login mallory" in void[0]
    code, text = _release(capsys, project)
    assert code == 1 and "FAIL  class high: approvals: 0 of 2" in text


def test_each_failing_class_control_is_one_line_naming_it_and_nothing_is_written(
    built_strict, tmp_path, monkeypatch, capsys
):
    p = copy(built_strict, tmp_path, monkeypatch)
    before = _entries(p)
    code, text = _release(capsys, p)
    assert code == 1
    failed = [line.strip() for line in text.splitlines() if line.strip().startswith("FAIL")]
    assert [f.split(":")[0] for f in failed] == ["FAIL  class high", "FAIL  class high", "FAIL  class high"]
    assert any("approvals: 0 of 2" in f for f in failed)
    assert any("audit (membership): risk class high (source digits) requires an audit" in f for f in failed)
    assert any(
        "fairness gap: risk class high (source digits) caps the per-group accuracy gap at 0.1 and "
        "metrics.json holds no fairness.max_gap" in f
        for f in failed
    )
    assert "not releasable:" in text and "nothing was written" in text
    assert not (p / "run" / MANIFEST).exists() and _entries(p) == before


def _facts(p):
    run_dir = p / "run"
    book, rec = run_evidence(run_dir, str(p / "ledger.db"))
    return run_dir, book, RunRecord.read(run_dir), rec


def _write_and_chain(p, name: str, data: dict) -> None:
    """What the crypto and monitor helpers' run code does: write a run file and chain it with the run."""
    run_dir, book, _, rec = _facts(p)
    (run_dir / name).write_text(json.dumps(data))
    evidence.rechain(book, run_dir, rec, [name], why="test: a control's output")


def test_encryption_monitoring_and_fairness_gates_read_what_the_run_left(project):
    risk = Classification("high", ("tag health",), Controls(encryption=True, monitoring=True, max_fairness_gap=0.1))
    gates = {g.name: g for g in release_gates.class_gates(*_facts(project), risk, None)}
    assert not any(g.ok for g in gates.values())
    assert "run.json records no encryption key" in gates["class high: encryption"].detail
    assert "released no reference_stats.json" in gates["class high: monitoring"].detail
    (project / "run" / "reference_stats.json").write_text("{}")  # present but never chained: an outsider's file
    gates = {g.name: g for g in release_gates.class_gates(*_facts(project), risk, None)}
    assert "reference_stats.json is not chained" in gates["class high: monitoring"].detail
    (project / "run" / "reference_stats.json").unlink()
    run = json.loads((project / "run" / "run.json").read_text())
    _write_and_chain(project, "run.json", dict(run, encryption={"key_id": "k1", "algorithm": "AES-256-GCM"}))
    _write_and_chain(project, "reference_stats.json", {"columns": {}})
    metrics = json.loads((project / "run" / "metrics.json").read_text())
    _write_and_chain(project, "metrics.json", dict(metrics, fairness={"groups": {}, "max_gap": 0.25}))
    gates = {g.name: g for g in release_gates.class_gates(*_facts(project), risk, None)}
    assert gates["class high: encryption"].ok and "key id k1" in gates["class high: encryption"].detail
    assert gates["class high: monitoring"].ok
    assert (
        not gates["class high: fairness gap"].ok
        and "0.25 exceeds the cap 0.1" in gates["class high: fairness gap"].detail
    )
    _write_and_chain(project, "metrics.json", dict(metrics, fairness={"groups": {}, "max_gap": 0.05}))
    gates = {g.name: g for g in release_gates.class_gates(*_facts(project), risk, None)}
    assert all(g.ok for g in gates.values())


def test_the_audit_control_maps_to_the_membership_and_one_run_audits(project):
    one, member, either = (
        Classification("high", ("source digits",), Controls(audit=a)) for a in ("one_run", "membership", "any")
    )
    for risk in (one, member, either):
        (gate,) = release_gates.class_gates(*_facts(project), risk, None)
        assert not gate.ok and gate.name == f"class high: audit ({risk.controls.audit})"
    assert "audit.one_run.enabled=true" in release_gates.class_gates(*_facts(project), one, None)[0].detail
    _write_and_chain(project, "audit.json", {"red_flag": True})
    assert "red flag" in release_gates.class_gates(*_facts(project), member, None)[0].detail
    _write_and_chain(project, "audit.json", {"red_flag": False})
    assert release_gates.class_gates(*_facts(project), member, None)[0].ok
    assert release_gates.class_gates(*_facts(project), either, None)[0].ok  # a membership audit is "any"
    assert not release_gates.class_gates(*_facts(project), one, None)[0].ok


@pytest.mark.slow
def test_on_postgresql_the_approver_is_the_servers_role_not_the_environment(
    postgres_url, postgres_server, tmp_path, monkeypatch, capsys
):
    import re

    from ledger_helpers.db import execute

    import privtrain
    from tests.conftest import REPO, TINY

    database = postgres_url.rsplit("/", 1)[1]
    monkeypatch.delenv("PRIVTRAIN_LEDGER", raising=False)
    as_user(monkeypatch, LAUNCHER)
    run_dir = privtrain.run("dp_sgd", [*TINY, f"ledger.path={postgres_url}"], output_dir=tmp_path / "run").output_dir
    text = (REPO / "docs" / "ledger.md").read_text()  # the writer's grants from the docs, given to alice's role
    block = next(b for b in re.findall(r"```sql\n(.*?)```", text, re.DOTALL) if "privtrain_writer" in b)
    block = re.sub(r"--[^\n]*", "", block).replace("DATABASE ledger", f'DATABASE "{database}"')
    grants = [
        s.strip().replace("privtrain_writer, privtrain_auditor", "alice").replace("privtrain_writer", "alice")
        for s in block.split(";")
        if s.strip() and "CREATE ROLE privtrain" not in s
    ]
    try:
        execute(postgres_url, "CREATE ROLE alice LOGIN", *grants)
        alice = postgres_server.url(database, user="alice")
        as_user(monkeypatch, "mallory")  # the environment names someone else: it does not matter
        code, out = _cli(capsys, "approve", str(run_dir), "--as", "mallory", "--ledger", alice)
        _one_line(code, out, 2, "--as 'mallory' is not you", "postgresql role 'alice'")
        code, out = _cli(capsys, "approve", str(run_dir), "--as", "alice", "--ledger", alice)
        assert code == 0 and "as alice (postgresql role)" in out, out
        (entry,) = ledger.open(postgres_url).decisions("approval")
        assert entry.detail["approver"] == "alice" and entry.user == "mallory"  # the role, and the login beside it
        as_user(monkeypatch, LAUNCHER)  # the launcher, logged in as themselves, using alice's role
        code, out = _cli(capsys, "approve", str(run_dir), "--as", "alice", "--ledger", alice)
        _one_line(code, out, 2, f"{LAUNCHER} launched run")
    finally:
        postgres_server.drop(postgres_url)
        execute(postgres_server.admin_url, "DROP ROLE IF EXISTS alice")
