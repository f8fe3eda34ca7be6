"""privtrain release --register: released runs in the MLflow Model Registry (a real SQLite store), bound to the
ledger: registration, verification against the ledger, tampering with the registry caught, rollback recorded."""

from __future__ import annotations

import json
import shutil

import pytest

from privtrain import ledger
from privtrain.artifacts import approvals, registry
from privtrain.artifacts.release import MANIFEST
from privtrain.cli import main
from tests.governance_runs import build, class_policy, copy

POLICY = class_policy("reviewed", "{approvals: 1}")
MODEL = "digits-classifier"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("registry"), POLICY)


@pytest.fixture(scope="module")
def released(built, tmp_path_factory):
    """The built project, approved by alice and released (not registered)."""
    base = tmp_path_factory.mktemp("released") / "p"
    shutil.copytree(built, base)
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("LOGNAME", "alice")
        mp.setenv("XDG_DATA_HOME", str(base / "xdg-data"))
        assert main(["approve", str(base / "run"), "--as", "alice", "--ledger", str(base / "ledger.db")]) == 0
        assert main(["release", str(base / "run"), "--ledger", str(base / "ledger.db")]) == 0
    finally:
        mp.undo()
    return base


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def _register(capsys, p, *extra):
    return _cli(
        capsys,
        "release",
        str(p / "run"),
        "--register",
        "--ledger",
        str(p / "ledger.db"),
        "--registry-uri",
        _uri(p),
        "--name",
        MODEL,
        *extra,
    )


def _registry(capsys, p, *argv):
    return _cli(capsys, "registry", *argv, "--registry-uri", _uri(p), "--ledger", str(p / "ledger.db"))


def _uri(p) -> str:
    return f"sqlite:///{p / 'mlflow' / 'registry.db'}"


def _client(p):
    (p / "mlflow").mkdir(exist_ok=True)
    return registry._client(_uri(p))


def _registered(p) -> list:
    return ledger.open(p / "ledger.db").decisions(registry.STATUS)


def test_a_run_that_is_not_releasable_is_refused_and_nothing_is_registered(built, tmp_path, monkeypatch, capsys):
    p = copy(built, tmp_path, monkeypatch)
    entries = len(ledger.open(p / "ledger.db").entries())
    code, text = _register(capsys, p)  # no approval yet: the release gates refuse it
    assert code == 1 and "FAIL  class reviewed: approvals: 0 of 1" in text and "nothing was written" in text
    assert not (p / "run" / MANIFEST).exists() and not (p / "mlflow").exists()
    assert len(ledger.open(p / "ledger.db").entries()) == entries
    code, text = _cli(
        capsys,
        "release",
        str(p / "run"),
        "--register",
        "--ledger",
        str(p / "ledger.db"),
        "--policy",
        str(p / "policy.yaml"),
        "--registry-uri",
        "sqlite:////nonexistent/x.db",
    )
    assert code == 1  # the gates run before any registry is touched


def test_register_round_trip_tags_files_and_ledger_entry(released, tmp_path, monkeypatch, capsys):
    p = copy(released, tmp_path, monkeypatch)
    code, text = _register(capsys, p)
    assert code == 0, text
    assert text.count("\n") == 1 and f"registered as {MODEL} version 1" in text
    (entry,) = _registered(p)
    book = ledger.open(p / "ledger.db")
    manifest = json.loads((p / "run" / MANIFEST).read_text())
    recorded = {
        n: h
        for e in book.entries()
        if e.run_id == entry.run_id and e.status in ("committed", "artifacts")
        for n, h in e.artifacts.items()
    }
    assert entry.detail["version"] == "1" and entry.detail["name"] == MODEL and entry.detail["uri"] == _uri(p)
    assert entry.detail["manifest_sha256"] == recorded[MANIFEST] and entry.detail["files"] == recorded
    client = _client(p)
    version = client.get_model_version(MODEL, "1")
    tags = version.tags
    assert tags["privtrain.manifest_sha256"] == recorded[MANIFEST]
    assert tags["privtrain.policy_sha256"] == manifest["policy"]["sha256"] == book.policy()["sha256"]
    assert json.loads(tags["privtrain.approvals"]) == ["alice"] and tags["privtrain.risk_class"] == "reviewed"
    assert json.loads(tags["privtrain.guarantee"])["epsilon"] <= 2.0 + 1e-9
    assert tags["privtrain.files_sha256"] == approvals.files_digest(recorded)
    assert registry.stored_files(client, version.run_id) == recorded  # exactly the ledger's files, read back
    assert str(client.get_model_version_by_alias(MODEL, registry.ALIAS).version) == "1"
    code, text = _registry(capsys, p, "verify", MODEL)
    assert code == 0 and "all 1 versions hold the files and tags their ledger entries recorded" in text
    assert book.verify().ok


def test_a_run_edited_after_release_is_not_registered(released, tmp_path, monkeypatch, capsys):
    p = copy(released, tmp_path, monkeypatch)
    card = p / "run" / "model_card.md"
    card.write_text(card.read_text() + "\nreviewed: perfect privacy\n")
    code, text = _register(capsys, p)
    assert code == 2 and text.count("\n") == 1 and "privtrain release --register refused" in text
    assert "model_card.md (edited since the ledger recorded it)" in text
    assert _registered(p) == [] and not (p / "mlflow").exists()


def test_tampering_with_the_registry_is_reported_and_blocks_rollback(released, tmp_path, monkeypatch, capsys):
    p = copy(released, tmp_path, monkeypatch)
    assert _register(capsys, p)[0] == 0
    (checkpoint,) = (p / "mlflow").rglob("checkpoint.pt")  # the registry's own copy of the model
    original = checkpoint.read_bytes()
    checkpoint.write_bytes(original + b"\0")
    entries = len(ledger.open(p / "ledger.db").entries())
    code, text = _registry(capsys, p, "verify", MODEL)
    assert code == 1 and text.count("\n") == 1
    assert "version 1 (ledger entry" in text and "checkpoint.pt (edited)" in text
    code, text = _registry(capsys, p, "rollback", MODEL, "--to-version", "1")
    assert code == 2 and text.count("\n") == 1 and "no longer matches ledger entry" in text
    assert "nothing was registered" in text and len(ledger.open(p / "ledger.db").entries()) == entries
    checkpoint.write_bytes(original)
    client = _client(p)
    client.set_model_version_tag(MODEL, "1", "privtrain.approvals", json.dumps(["alice", "bob"]))
    code, text = _registry(capsys, p, "verify", MODEL)
    assert code == 1 and "tag privtrain.approvals changed" in text
    client.set_model_version_tag(MODEL, "1", "privtrain.approvals", json.dumps(["alice"]))
    run_id = client.get_model_version(MODEL, "1").run_id
    client.create_model_version(MODEL, source=f"runs:/{run_id}/model", run_id=run_id)  # past privtrain
    code, text = _registry(capsys, p, "verify", MODEL)
    assert code == 1 and "version 2: not recorded in the ledger (registered outside privtrain)" in text


def test_rollback_registers_the_earlier_release_again_and_is_recorded(released, tmp_path, monkeypatch, capsys):
    p = copy(released, tmp_path, monkeypatch)
    assert _register(capsys, p)[0] == 0
    code, text = _registry(capsys, p, "rollback", MODEL, "--to-version", "1")
    assert code == 0 and f"rolled back to the release of version 1 as {MODEL} version 2" in text
    first, rolled = _registered(p)
    assert rolled.detail["action"] == "rollback" and rolled.detail["rollback_of"] == "1"
    assert rolled.detail["version"] == "2" and rolled.detail["files"] == first.detail["files"]
    assert rolled.run_id == first.run_id and ledger.open(p / "ledger.db").verify().ok
    client = _client(p)
    assert str(client.get_model_version_by_alias(MODEL, registry.ALIAS).version) == "2"
    assert client.get_model_version(MODEL, "2").tags["privtrain.manifest_sha256"] == first.detail["manifest_sha256"]
    code, text = _registry(capsys, p, "verify", MODEL)
    assert code == 0 and "all 2 versions" in text
    code, text = _cli(capsys, "ledger", "runs", "digits", "--path", str(p / "ledger.db"))
    assert code == 0 and "approved by alice (login)" in text and f"register: {MODEL} version 1" in text
    assert f"rollback: {MODEL} version 2" in text
    code, text = _registry(capsys, p, "rollback", MODEL, "--to-version", "7")
    assert code == 2 and "records no version 7" in text and len(_registered(p)) == 2
