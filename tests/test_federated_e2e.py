"""The federated recipe end to end: Flower simulation (Ray) and a loopback deployment. Slow: `pytest --slow`."""

from __future__ import annotations

import json
import os

import pytest

import privtrain
from privtrain import ledger
from privtrain.privacy.events import epsilon_pld

pytestmark = pytest.mark.slow

# Small and quick: 3 clients, all sampled (q=1), 2 rounds, one CPU for Ray.
TINY = [
    "fl.num_clients=3",
    "fl.fraction=1.0",
    "fl.rounds=2",
    "fl.local_epochs=1",
    "recipe.progress=false",
    "fl.simulation.num_cpus=1",
    "fl.simulation.cpus_per_client=0.5",
]


def test_central_dp_runs_are_charged_per_client_and_compose(tmp_path, ledger_path):
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a notebook's inline backend stands in: a run must not switch it to Agg
    try:
        first = privtrain.run("federated", TINY, output_dir=tmp_path / "a")
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == []  # its PNGs left pyplot alone
    finally:
        matplotlib.use(before)
    second = privtrain.run("federated", [*TINY, "seed=1"], output_dir=tmp_path / "b")
    g = first.guarantee
    assert g.unit == "client" and g.accountant == "pld" and g.epsilon == pytest.approx(3.0, rel=0.01)
    population = first.dataset["population"]["key"]
    assert population == second.dataset["population"]["key"]  # same population: the seed is not part of it
    book = ledger.open(ledger_path)
    both = epsilon_pld([*first.guarantee.events, *second.guarantee.events], g.delta)
    assert book.spent("digits", "client", population) == pytest.approx(both, rel=1e-3) and both > 4.0  # composed
    # ... and the source's example-level budget is charged what central DP bounds there (σ/2 per release)
    example = [x for r in (first, second) for gg in r.guarantees if gg.unit == "example" for x in gg.events]
    assert book.spent("digits", "example") == pytest.approx(epsilon_pld(example, 1e-5), rel=1e-3)
    assert example[0].event.noise_multiplier == pytest.approx(g.events[0].event.noise_multiplier / 2)
    committed = [e for e in book.entries("digits") if e.status == "committed"]
    assert sorted(e.unit for e in committed) == ["client", "client", "example", "example"]
    metrics = json.loads((first.output_dir / "metrics.json").read_text())
    assert [r["round"] for r in metrics["history"]] == [0, 1, 2]
    assert metrics["history"][-1]["releases"] == 2 and "federated_accuracy" in metrics["history"][-1]
    assert "flower_rdp_epsilon" not in metrics["federated"]
    assert metrics["history"][-1]["epsilon_client"] == pytest.approx(g.epsilon, rel=0.01)  # the live figure
    for name in ("partition.json", "partition.png", "accuracy.png", "model_card.md", "final_model.pt"):
        assert (first.output_dir / name).is_file(), name
    assert (
        "differential privacy per client (all the data of one federated participant)**"
        in (first.output_dir / "model_card.md").read_text()
    )
    partition = json.loads((first.output_dir / "partition.json").read_text())
    assert len(partition["train_sizes"]) == 3 and not [k for k in partition if "label" in k or "skew" in k]
    assert not [k for r in metrics["history"] for k in r if "loss" in k and k not in ("loss", "federated_loss")]


def test_central_dp_with_poisson_sampling_on_100_clients(tmp_path, ledger_path):
    result = privtrain.run(
        "federated",
        [
            "fl.num_clients=100",
            "fl.clients_per_round=10",
            "fl.rounds=3",
            "fl.local_epochs=1",
            "recipe.progress=false",
            "fl.simulation.num_cpus=1",
        ],
        output_dir=tmp_path / "r",
    )
    units = {g.unit: g for g in result.guarantees}
    (client_event,) = units["client"].events
    assert type(client_event.event).__name__ == "PoissonSampledDpEvent"
    assert client_event.event.sampling_probability == pytest.approx(0.1) and client_event.count == 3
    assert units["client"].epsilon == pytest.approx(3.0, rel=0.01)
    (example_event,) = units["example"].events
    assert example_event.event.event.noise_multiplier == pytest.approx(client_event.event.event.noise_multiplier / 2)
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    rounds = metrics["history"][1:]
    assert [r["releases"] for r in rounds] == [1, 2, 3] and 0 < sum(r["sampled"] for r in rounds) < 100
    assert "federated_accuracy" in rounds[-1] and "federated_accuracy" not in rounds[0]  # > 20 clients: last only
    book = ledger.open(ledger_path)
    committed = {e.unit: e for e in book.entries("digits") if e.status == "committed"}
    assert set(committed) == {"client", "example"}
    assert committed["client"].scope == result.dataset["population"]["key"]
    assert book.spent("digits", "client", committed["client"].scope) == pytest.approx(units["client"].epsilon, rel=1e-3)


def test_central_and_local_dp_give_two_guarantees_and_two_charges(tmp_path, ledger_path):
    result = privtrain.run(
        "federated",
        [
            *TINY,
            "privacy=central_local",
            "fl.partition=dirichlet",
            "fl.alpha=1.0",
            "privacy.clipping_side=client",
        ],  # each client clips; the server re-clips
        output_dir=tmp_path / "r",
    )
    units = {g.unit: g for g in result.guarantees}
    assert set(units) == {"client", "example"}
    assert units["example"].epsilon <= 3.0 * 1.01 and units["client"].epsilon == pytest.approx(8.0, rel=0.01)
    book = ledger.open(ledger_path)
    population = result.dataset["population"]["key"]
    assert book.spent("digits", "client", population) == pytest.approx(
        epsilon_pld(list(units["client"].events), 1e-5), rel=1e-3
    )
    assert book.spent("digits", "example") == pytest.approx(epsilon_pld(list(units["example"].events), 1e-5), rel=2e-2)
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    steps = metrics["federated"]["client_steps"]
    assert len(steps) == 3 and all(v > 0 for v in steps.values())
    assert max(metrics["federated"]["client_epsilon"].values()) == pytest.approx(units["example"].epsilon, rel=1e-6)


def test_non_private_fedprox_learns_and_fedadam_runs_under_local_dp(tmp_path, ledger_path):
    result = privtrain.run(
        "federated", [*TINY, "privacy=none", "fl.strategy=fedprox", "fl.rounds=3"], output_dir=tmp_path / "r"
    )
    assert result.metrics["accuracy"] > 0.8
    assert all(not g.private for g in result.guarantees)
    assert "nonprivate_train_loss" in result.metrics  # privacy=none only, and named for what it is
    adam = privtrain.run("federated", [*TINY, "privacy=dp", "fl.strategy=fedadam"], output_dir=tmp_path / "a")
    assert adam.guarantee.unit == "example" and adam.metrics["accuracy"] > 0.2
    assert "nonprivate_train_loss" not in adam.metrics


def test_one_ray_runtime_serves_every_run_of_a_process(tmp_path, ledger_path):
    import ray

    from privtrain.federated import runtime

    privtrain.run("federated", [*TINY, "fl.rounds=1"], output_dir=tmp_path / "a")
    assert runtime.running()
    tmp = runtime._STATE["tmp"]
    pool = runtime._STATE["pool"]
    privtrain.run("federated", [*TINY, "fl.rounds=1", "seed=1"], output_dir=tmp_path / "b")
    assert runtime._STATE["tmp"] == tmp and runtime._STATE["pool"] is pool  # same Ray, same client actors
    privtrain.run("federated", [*TINY, "fl.rounds=1", "fl.simulation.reuse_ray=false"], output_dir=tmp_path / "c")
    assert not ray.is_initialized() and not os.path.exists(tmp)  # per-run Ray: stopped and removed
    privtrain.run("federated", [*TINY, "fl.rounds=1"], output_dir=tmp_path / "d")
    tmp = runtime._STATE["tmp"]
    runtime.shutdown()  # what atexit does
    assert not ray.is_initialized() and not os.path.exists(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_loopback_deployment_runs_two_rounds_and_is_charged(tmp_path, ledger_path):
    from privtrain.federated import deployment

    started: list[int] = []
    real_spawn = deployment.Deployment._spawn

    def spy(self, name, args):
        proc = real_spawn(self, name, args)
        started.append(proc.pid)
        return proc

    deployment.Deployment._spawn = spy
    try:
        result = privtrain.run(
            "federated",
            [
                "fl.engine=deployment",
                "fl.num_clients=2",
                "fl.rounds=2",
                "recipe.progress=false",
                "fl.local_epochs=1",
                "fl.federated_evaluation=false",
            ],  # half the ClientApp processes
            output_dir=tmp_path / "d",
        )
    finally:
        deployment.Deployment._spawn = real_spawn
    assert len(started) == 3  # one SuperLink, two SuperNodes
    assert not any(_alive(p) for p in started)
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert [r["round"] for r in metrics["history"]] == [0, 1, 2] and metrics["federated"]["engine"] == "deployment"
    assert metrics["history"][-1]["releases"] == 2
    book = ledger.open(ledger_path)
    committed = {e.unit: e for e in book.entries("digits") if e.status == "committed"}
    assert set(committed) == {"client", "example"}
    assert committed["client"].epsilon == pytest.approx(result.guarantee.epsilon)
    assert committed["client"].scope == result.dataset["population"]["key"]
    assert "metrics.json" in committed["client"].artifacts


def test_deployment_processes_stop_even_when_the_run_fails():
    from privtrain import config
    from privtrain.federated import deployment

    s = config.settings("federated", config.compose("federated", ["fl.engine=deployment"])).fl
    pids = []
    with pytest.raises(RuntimeError, match="boom"):
        with deployment.Deployment(s, num_clients=2) as dep:
            pids = [p.pid for p in dep.procs]
            assert len(pids) == 3 and all(_alive(p) for p in pids)
            raise RuntimeError("boom")
    assert not any(_alive(p) for p in pids)
