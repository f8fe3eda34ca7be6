"""The governance walkthrough of docs/governance.md, end to end, as a privacy officer and two reviewers run it.

A health source with recorded provenance and a retention date; a policy whose high-risk class requires
ε ≤ 3, a one-run audit, two approvals, encryption and drift monitoring. Each missing control is refused in
one line with the ledger unchanged; then the run trains, is approved twice, released, registered, and a
shifted batch of new rows pages the monitor.
"""

from __future__ import annotations

import json

import pytest
from monitoring_helpers import overrides, table

import privtrain
from privtrain import ledger
from privtrain.cli import main
from privtrain.errors import UserError

N = 3000
POLICY = """\
version: 1
sources:
  patients: {tags: [health]}
rules:
  - name: health-data
    when: {tags: [health]}
    require_provenance: true
    forbid_non_private: true
risk:
  default: low
  classes:
    high:
      when: {tags: [health]}
      controls: {max_epsilon: 3, units: [example], audit: one_run, approvals: 2, encryption: true,
                 monitoring: true, max_fairness_gap: 0.6}
    low:
      controls: {}
monitoring: {psi_warn: 0.1, psi_alert: 0.25}
"""


def _patients(path, *extra: str, epochs: int = 1) -> list[str]:
    """The monitoring tests' table (a planted group effect, a shiftable x1), declared as source patients."""
    return [
        o.replace("dataset.source=people", "dataset.source=patients") for o in overrides(path, N, *extra, epochs=epochs)
    ]


def _as(monkeypatch, name: str) -> None:
    monkeypatch.setenv("LOGNAME", name)  # how a file ledger knows who acts (getpass)


def _entries(book) -> list[str]:
    return [e.hash for e in book.entries()]


@pytest.mark.slow
def test_high_risk_health_model_from_provenance_to_a_drift_alert(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / ".privtrain").mkdir(parents=True)
    ledger_file = project / ".privtrain" / "ledger.db"
    monkeypatch.setenv("PRIVTRAIN_LEDGER", str(ledger_file))
    monkeypatch.chdir(project)
    table(N, 0).to_csv(project / "patients.csv", index=False)
    table(1000, 1, shift=30.0).to_csv(project / "shifted.csv", index=False)
    (project / ".privtrain" / "policy.yaml").write_text(POLICY)

    # The officer registers the source and its provenance, and makes the artifact key.
    _as(monkeypatch, "officer")
    assert (
        main(
            [
                "ledger",
                "budget",
                "set",
                str(project / "patients.csv"),
                "--source",
                "patients",
                "--epsilon",
                "8",
                "--delta",
                "1e-5",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "ledger",
                "provenance",
                "set",
                "patients",
                "--collected-by",
                "St Mary clinic",
                "--basis",
                "consent form v3",
                "--purposes",
                "diagnosis-research",
                "--retain-until",
                "2030-06-30",
                "--regions",
                "eu-west",
                "--reason",
                "DPIA 2026-14",
            ]
        )
        == 0
    )
    assert main(["keys", "new", str(project / "key.json")]) == 0
    assert main(["policy", "explain", "dp_sgd", *_patients(project / "patients.csv")]) == 1
    explained = capsys.readouterr().out
    assert "risk class high (tag health)" in explained and "2 approvals before release" in explained

    good = _patients(
        project / "patients.csv",
        "privacy.target_epsilon=2.5",
        "run.purpose=diagnosis-research",
        "site.region=eu-west",
        f"artifacts.key_file={project / 'key.json'}",
        "monitor.reference=true",
        "monitor.epsilon=1",
        "audit.one_run.enabled=true",
        "+dataset.sensitive=[sex,age_band]",
        epochs=3,
    )

    # Every missing control: one line naming it, nothing written, the ledger unchanged.
    _as(monkeypatch, "launcher")
    before = _entries(ledger.open())
    refusals = {
        "encrypted artifacts": [o for o in good if not o.startswith("artifacts.key_file")],
        "ε ≤ 3": [*good, "privacy.target_epsilon=5"],
        "drift monitoring": [o for o in good if not o.startswith("monitor.reference")],
        "one-run audit": [o for o in good if not o.startswith("audit.one_run")],
        "marketing": [*good, "run.purpose=marketing"],
        "us-east": [*good, "site.region=us-east"],
    }
    for words, attempt in refusals.items():
        with pytest.raises(UserError) as refused:
            privtrain.run("dp_sgd", attempt, output_dir=project / "refused")
        assert words in str(refused.value) and "\n" not in str(refused.value), words
        assert not (project / "refused").exists()
    assert _entries(ledger.open()) == before

    # The run: encrypted checkpoint, DP reference statistics, fairness, provenance in the card.
    result = privtrain.run("dp_sgd", good, output_dir=project / "run")
    run = result.output_dir
    assert not (run / "checkpoint.pt").read_bytes().startswith(b"PK")  # sealed, not a torch zip
    record = json.loads((run / "run.json").read_text())
    assert record["encryption"]["key_id"]
    assert (run / "reference_stats.json").is_file()
    card = (run / "model_card.md").read_text()
    assert "St Mary clinic" in card and "Fairness" in card
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fairness"]["max_gap"] >= 0

    # Release needs two approvers other than the launcher.
    _as(monkeypatch, "officer")
    assert main(["release", str(run)]) == 1
    assert "approvals" in capsys.readouterr().out
    assert not (run / "release.json").exists()
    _as(monkeypatch, "launcher")
    assert main(["approve", str(run), "--as", "launcher"]) == 2  # nobody approves their own run
    for reviewer in ("alice", "bob"):
        _as(monkeypatch, reviewer)
        assert main(["approve", str(run), "--as", reviewer, "--comment", "reviewed card and audit"]) == 0
    _as(monkeypatch, "officer")
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    assert main(["release", str(run), "--register", "--registry-uri", registry, "--name", "triage"]) == 0
    manifest = json.loads((run / "release.json").read_text())
    assert manifest["risk_class"]["name"] == "high"
    assert sorted(a["approver"] for a in manifest["approvals"]) == ["alice", "bob"]
    assert main(["registry", "verify", "triage", "--registry-uri", registry]) == 0

    # A shifted batch pages the monitor (exit 1), and the report states its guarantee. The model is sealed: the
    # scheduler that runs the monitor holds the key (without it: one line, exit 2).
    capsys.readouterr()
    assert main(["monitor", str(run), str(project / "shifted.csv"), "--out", str(tmp_path / "nokey")]) == 2
    assert "is encrypted" in capsys.readouterr().err
    monkeypatch.setenv("PRIVTRAIN_ARTIFACT_KEY_FILE", str(project / "key.json"))
    assert main(["monitor", str(run), str(project / "shifted.csv"), "--out", str(tmp_path / "drift")]) == 1
    report = json.loads((tmp_path / "drift" / "drift_report.json").read_text())
    assert report["alert"] and "x1" in {row["name"] for row in report["features"] if row["level"] == "alert"}
    assert report["guarantee"]
    assert ledger.open().verify().ok
