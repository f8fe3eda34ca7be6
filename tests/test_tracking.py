"""Experiment tracking: what reaches MLflow and TensorBoard, read back with their own readers."""

from __future__ import annotations

import math

import pytest
from conftest import TINY

import privtrain

pytest.importorskip("mlflow")


def _mlflow_run(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_gets_epsilon_as_it_grows_the_guarantee_and_the_card(tmp_path, ledger_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # the artifacts go beside the store, not into the working directory
    result = privtrain.run(
        "dp_sgd", [*TINY, "tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment=t"], output_dir=tmp_path / "r"
    )
    assert list((tmp_path / "cwd").iterdir()) == [] and (tmp_path / "artifacts").is_dir()
    client, run = _mlflow_run(uri, "t")
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "epsilon")]
    assert len(history) >= 2 and history == sorted(history)  # ε grows with the steps
    assert history[-1][1] == pytest.approx(result.guarantee.epsilon, rel=1e-6)
    assert run.data.metrics["epsilon_example"] == pytest.approx(result.guarantee.epsilon, rel=1e-9)
    assert run.data.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert run.data.tags["guarantee_example"] == result.guarantee.describe()
    assert run.data.params["privacy.target_epsilon"] == "3.0" and run.data.params["dataset.loader"] == "digits"
    assert not any("train" in k for k in run.data.metrics)  # no training-data statistic leaves undeclared
    assert {"model_card.md", "config.yaml", "run.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_non_private_run_is_tracked_as_such(tmp_path, ledger_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    privtrain.run(
        "dp_sgd",
        [*TINY, "privacy=none", "ledger.allow_non_private=true", "tracking=mlflow", f"tracking.uri={uri}"],
        output_dir=tmp_path / "r",
    )
    client, run = _mlflow_run(uri, "privtrain-dp_sgd")
    assert run.data.tags["guarantee_example"].startswith("none: non-private")
    assert run.data.metrics["epsilon_example"] > 1e300  # infinity, in a number MLflow can store
    assert client.get_metric_history(run.info.run_id, "epsilon") == []


def test_tensorboard_gets_epsilon_in_the_run_directory(tmp_path, ledger_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = privtrain.run("dp_sgd", [*TINY, "tracking=tensorboard"], output_dir=tmp_path / "r")
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    epsilon = [e.value for e in events.Scalars("epsilon")]
    assert len(epsilon) >= 2 and epsilon == sorted(epsilon)
    assert epsilon[-1] == pytest.approx(result.guarantee.epsilon, rel=1e-5)
    assert math.isclose(events.Scalars("final/accuracy")[0].value, result.metrics["accuracy"], rel_tol=1e-5)
    assert "train_batch_loss_not_dp" not in events.Tags()["scalars"]


def test_the_training_loss_leaves_only_when_declared_and_tagged(tmp_path, ledger_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = privtrain.run(
        "dp_sgd",
        [*TINY, "tracking=mlflow", f"tracking.uri={uri}", "tracking.log_train_loss=true"],
        output_dir=tmp_path / "r",
    )
    client, run = _mlflow_run(uri, "privtrain-dp_sgd")
    losses = client.get_metric_history(run.info.run_id, "train_batch_loss_not_dp")
    assert len(losses) == result.metrics["steps"] and all(math.isfinite(m.value) for m in losses)
    assert "no privacy guarantee covers it" in run.data.tags["train_batch_loss_not_dp"]
    assert "log_train_loss: true" in (tmp_path / "r" / "config.yaml").read_text()  # the declaration travels


def test_an_unreachable_tracking_server_costs_no_budget(tmp_path, ledger_path):
    from privtrain.errors import UserError

    with pytest.raises(UserError, match=r"tracking.uri=http://127.0.0.1:9/: MLflow could not start a run"):
        privtrain.run(
            "dp_sgd", [*TINY, "tracking=mlflow", "tracking.uri=http://127.0.0.1:9/"], output_dir=tmp_path / "r"
        )
    from privtrain import ledger

    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []  # nothing reserved or charged
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_federated_run_logs_each_rounds_accuracy_and_epsilon(tmp_path, ledger_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = privtrain.run(
        "federated",
        [
            "fl.rounds=3",
            "fl.local_epochs=1",
            "recipe.progress=false",
            "fl.simulation.num_cpus=1",
            "tracking=tensorboard",
        ],
        output_dir=tmp_path / "r",
    )
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    epsilon = [(e.step, e.value) for e in events.Scalars("epsilon_client")]
    assert [step for step, _ in epsilon] == [0, 1, 2, 3]  # round 0: the initial model, nothing spent yet
    assert epsilon[0][1] == 0 and [v for _, v in epsilon] == sorted(v for _, v in epsilon)
    assert epsilon[-1][1] == pytest.approx(result.guarantee.epsilon, rel=1e-6)
    assert len(events.Scalars("accuracy")) == 4
