"""DP reference statistics (charged, noisy with fresh noise, bins from the schema) and `privtrain monitor`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from monitoring_helpers import overrides, table

import privtrain
from privtrain import ledger
from privtrain.cli import main
from privtrain.data.schema import declared_schema
from privtrain.errors import UserError
from privtrain.monitoring import drift, reference
from privtrain.monitoring.bins import schema_bins
from privtrain.monitoring.settings import MonitorSettings
from privtrain.privacy import events as ev

N = 4000
DECL = {
    "x1": {"min": 0, "max": 100},
    "x2": {"min": 0, "max": 10, "transform": "log1p"},
    "sex": {"categories": ["F", "M"]},
    "label": {"categories": ["no", "yes"]},
}


@pytest.fixture
def data(tmp_path):
    table(N, 0).to_csv(tmp_path / "train.csv", index=False)
    table(1500, 1).to_csv(tmp_path / "same.csv", index=False)
    table(1500, 2, shift=25).to_csv(tmp_path / "shifted.csv", index=False)
    return tmp_path


def _committed(ledger_path):
    return [e for e in ledger.open(ledger_path).entries() if e.status == "committed"]


# --- the mechanism, against dp-accounting and the schema --------------------------------------------------------


def test_noise_multiplier_gives_the_declared_epsilon_by_an_independent_accountant():
    z = reference.noise_multiplier(0.5, 1e-5)
    import dp_accounting

    assert ev.epsilon_pld([dp_accounting.GaussianDpEvent(z)], 1e-5) == pytest.approx(0.5, abs=0.01)
    assert ev.epsilon_rdp([dp_accounting.GaussianDpEvent(z)], 1e-5) >= 0.5 - 1e-6  # RDP is looser, never tighter
    assert reference.noise_multiplier(2.0, 1e-5) < z  # more ε, less noise


def test_bins_come_from_the_schema_not_the_rows():
    schema = declared_schema(DECL, ["x1", "x2", "sex"], "label")
    rows = table(500, 0)[["x1", "x2", "sex"]]
    extreme = pd.concat([rows, pd.DataFrame({"x1": [1e9], "x2": [-5.0], "sex": ["X"]})], ignore_index=True)
    before = [b.labels for b in schema_bins(schema, 10)]
    assert before == [b.labels for b in schema_bins(declared_schema(DECL, ["x1", "x2", "sex"], "label"), 10)]
    bins = schema_bins(schema, 10)
    assert bins[0].labels[0] == "[0, 10)" and bins[0].labels[-1] == "[90, 100]"
    # log1p: equal width in log space, edges in the column's units
    assert bins[1].labels[0].startswith("[0, ") and bins[1].labels[-1].endswith(", 10]")
    assert bins[2].labels == ("F", "M", "(undeclared)")
    # the extreme row lands, clipped, in the end bins (and the undeclared category in its own bin): edges unmoved
    for b in bins:
        a, c = b.counts(rows[b.column.name]), b.counts(extreme[b.column.name])
        assert c.sum() == a.sum() + 1 and (c - a).max() == 1
    assert bins[0].counts(extreme["x1"])[-1] == bins[0].counts(rows["x1"])[-1] + 1
    assert bins[1].counts(extreme["x2"])[0] == bins[1].counts(rows["x2"])[0] + 1
    assert bins[2].counts(extreme["sex"])[-1] == 1


def _plan(schema, epsilon=0.5):
    class D:
        image_shape = None
        target = "label"

    D.schema = schema
    return reference.plan(MonitorSettings(True, epsilon, 10), D, 1e-5)


def test_release_is_noisy_with_fresh_noise_every_time_and_a_replayable_seed_voids_it(tmp_path):
    schema = declared_schema(DECL, ["x1", "x2", "sex"], "label")
    rows = table(800, 0)
    x, y = schema.transform(rows), schema.encode_target(rows["label"])
    ref = _plan(schema)
    assert ref.histograms == 5 and ref.sensitivity == pytest.approx(math.sqrt(5))  # 3 features, labels, predictions
    docs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        docs.append(json.loads(reference.release(ref, x, y, y, tmp_path / name).read_text()))
    exact = schema_bins(schema, 10)[0].counts(rows["x1"])
    a, b = np.array(docs[0]["features"][0]["counts"]), np.array(docs[1]["features"][0]["counts"])
    assert not np.allclose(a, exact, atol=1.0) and not np.allclose(a, b, atol=1.0)  # noisy, and fresh each time
    # the attacker who knows the seed replays nothing: only the debugging mode repeats, and it says void
    (tmp_path / "r1").mkdir(), (tmp_path / "r2").mkdir()
    r1 = json.loads(reference.release(ref, x, y, y, tmp_path / "r1", reproducible_from=0).read_text())
    r2 = json.loads(reference.release(ref, x, y, y, tmp_path / "r2", reproducible_from=0).read_text())
    assert r1["features"] == r2["features"] and r1["guarantee"]["epsilon"] is None


def test_noise_has_the_calibrated_spread(tmp_path):
    schema = declared_schema(DECL, ["x1", "x2", "sex"], "label")
    ref = _plan(schema, epsilon=1.0)
    x, y = np.zeros((0, schema.n_inputs), np.float32), np.zeros(0, np.int64)
    values = []
    for i in range(40):
        (tmp_path / str(i)).mkdir()
        doc = json.loads(reference.release(ref, x, y, y, tmp_path / str(i)).read_text())
        values += (
            [v for f in doc["features"] for v in f["counts"]] + doc["label"]["counts"] + doc["predictions"]["counts"]
        )
    assert np.std(values) == pytest.approx(ref.noise_sd, rel=0.1)
    assert abs(np.mean(values)) < 3 * ref.noise_sd / math.sqrt(len(values))


def test_reference_needs_a_table_and_sane_settings():
    schema = declared_schema(DECL, ["x1"], "label")
    with pytest.raises(UserError, match="monitor.epsilon"):
        reference.plan(MonitorSettings(True, -1.0, 10), type("D", (), {"image_shape": None, "schema": schema}), 1e-5)


def test_psi_and_thresholds():
    e = drift.proportions([50, 50, 0])
    assert drift.psi(e, e) == 0.0
    assert drift.psi(drift.proportions([50, 50, 0]), drift.proportions([90, 10, 0])) > 0.25
    assert drift.level(0.3, 0.1, 0.25) == "alert" and drift.level(0.2, 0.1, 0.25) == "warn"
    assert drift.thresholds(None, None, None) == (0.1, 0.25, "defaults")

    class P:
        monitoring = (0.05, 0.2)
        path = __import__("pathlib").Path("policy.yaml")

    assert drift.thresholds(P, None, 0.15)[:2] == (0.05, 0.15)
    with pytest.raises(UserError, match="looser"):
        drift.thresholds(P, None, 0.3)


# --- end to end: charged, refused, monitored -----------------------------------------------------------------------


def test_reference_is_charged_with_the_training_and_monitor_pages_on_shift(data, ledger_path, capsys):
    result = privtrain.run(
        "dp_sgd",
        overrides(data / "train.csv", N, "monitor.reference=true", "privacy.target_epsilon=2", epochs=4, batch=128),
        output_dir=data / "run",
    )
    (entry,) = _committed(ledger_path)
    events = ev.loads(entry.events_json)
    assert any(isinstance(e, __import__("dp_accounting").GaussianDpEvent) for e in events)
    training_only = [e for e in events if not isinstance(e, __import__("dp_accounting").GaussianDpEvent)]
    composed = ev.epsilon_pld(events, entry.delta)
    assert entry.epsilon == pytest.approx(composed, rel=1e-3)
    assert entry.epsilon > ev.epsilon_pld(training_only, entry.delta) + 0.05  # the histograms cost something
    assert entry.epsilon < result.guarantee.epsilon + 0.5 + 1e-6  # composed tightly: at most the sum
    doc = json.loads((data / "run" / "reference_stats.json").read_text())
    assert doc["guarantee"]["run_epsilon"] == pytest.approx(entry.epsilon, rel=1e-3)
    from privtrain.artifacts.verify import recorded_hashes

    assert "reference_stats.json" in recorded_hashes(data / "run")[1]  # chained with the run's other files
    metrics = json.loads((data / "run" / "metrics.json").read_text())
    assert metrics["monitoring"]["epsilon"] == 0.5
    assert "## Monitoring" in (data / "run" / "model_card.md").read_text()
    capsys.readouterr()

    assert main(["monitor", str(data / "run"), str(data / "same.csv"), "--out", str(data / "m0")]) == 0
    ok = json.loads((data / "m0" / "drift_report.json").read_text())
    assert not ok["alert"] and ok["guarantee"]["reference_epsilon"] == 0.5
    assert ok["guarantee"]["epsilon"] == pytest.approx(entry.epsilon, rel=1e-3)  # references and model, composed
    assert main(["monitor", str(data / "run"), str(data / "shifted.csv"), "--out", str(data / "m1")]) == 1
    bad = json.loads((data / "m1" / "drift_report.json").read_text())
    levels = {f["name"]: f["level"] for f in bad["features"]}
    # x2 is not shifted: it never pages, though the references' noise in its near-empty bins can reach "warn"
    assert levels["x1"] == "alert" and levels["x2"] != "alert" and levels["(predicted class)"] == "alert"
    assert (data / "m1" / "drift.png").stat().st_size > 1000 and "| x1 |" in capsys.readouterr().out
    # the default output folder is not part of the run's evidence: verify still passes
    assert main(["monitor", str(data / "run"), str(data / "same.csv")]) == 0
    assert main(["verify", str(data / "run")]) == 0

    # bad input: one line, exit 2, nothing written
    table(10, 3).drop(columns=["x2"]).to_csv(data / "nox2.csv", index=False)
    capsys.readouterr()
    assert main(["monitor", str(data / "run"), str(data / "nox2.csv"), "--out", str(data / "m2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "x2" in err and not (data / "m2").exists()
    (data / "notes.txt").write_text("a,b\n1,2,3,4\n\x00")
    assert main(["monitor", str(data / "run"), str(data / "notes.txt"), "--out", str(data / "m3")]) == 2
    # a rewritten reference (an attacker shrinking the noise, or hiding drift) is refused
    doc["features"][0]["counts"] = [100.0] * 10
    (data / "run" / "reference_stats.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["monitor", str(data / "run"), str(data / "shifted.csv"), "--out", str(data / "m4")]) == 2
    assert "does not match the hash in the ledger" in capsys.readouterr().err


def test_a_policy_cap_the_composition_exceeds_refuses_and_charges_nothing(data, ledger_path):
    (ledger_path.parent / "policy.yaml").write_text(
        "version: 1\nrules:\n  - name: cap\n    max_epsilon_per_run: 2.2\nmonitoring: {psi_warn: 0.05, psi_alert: 0.2}\n"
    )
    with pytest.raises(UserError, match="cap"):
        privtrain.run(
            "dp_sgd",
            overrides(data / "train.csv", N, "monitor.reference=true", "monitor.epsilon=1", "privacy.target_epsilon=2"),
            output_dir=data / "refused",
        )
    assert _committed(ledger_path) == [] and not (data / "refused").exists()
    # the training alone fits the cap
    privtrain.run("dp_sgd", overrides(data / "train.csv", N, "privacy.target_epsilon=2"), output_dir=data / "ok")
    assert len(_committed(ledger_path)) == 1


def test_policy_monitoring_section_is_parsed_and_checked(tmp_path):
    from privtrain.policy import load

    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules: []\nmonitoring: {psi_warn: 0.05, psi_alert: 0.2}\n")
    policy = load(path)
    assert policy.monitoring == (0.05, 0.2)
    assert drift.thresholds(policy, None, None) == (0.05, 0.2, "policy policy.yaml")
    path.write_text("version: 1\nrules: []\nmonitoring: {psi_warn: 0.3, psi_alert: 0.2}\n")
    with pytest.raises(UserError, match="psi_warn"):
        load(path)
    path.write_text("version: 1\nrules: []\nmonitoring: {psi_alarm: 0.3}\n")
    with pytest.raises(UserError, match="unknown key 'psi_alarm'"):
        load(path)
    path.write_text("version: 1\nrules: []\n")
    assert load(path).monitoring is None
