"""The federated recipe's parts, without Ray or Flower processes: partitions, accounting, the ClientApp."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest

import privtrain
from privtrain import config, ledger
from privtrain.errors import UserError
from privtrain.federated import accounting, partition as part, planning, task


def _population(*overrides: str):
    s = config.settings("federated", config.compose("federated", list(overrides)))
    return s, s.fl, task.build_population(task.load_dataset(s.dataset, s.fl), s.fl)


# --- partitions ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_partitions_are_disjoint_complete_and_deterministic(kind):
    labels = np.repeat(np.arange(10), 50)
    spec = part.PartitionSpec(kind, num_clients=7, alpha=0.5, seed=3)
    a, b = part.partition(labels, spec), part.partition(labels, spec)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    joined = np.concatenate(a)
    assert len(joined) == len(np.unique(joined)) == len(labels)  # disjoint and complete
    other = part.partition(labels, part.PartitionSpec(kind, num_clients=7, alpha=0.5, seed=4))
    assert not all(np.array_equal(x, y) for x, y in zip(a, other))


def test_column_partition_follows_the_client_column():
    ids = np.array(["b", "a", "b", "c", "a", "c", "c"])
    parts = part.partition(np.zeros(7, int), part.PartitionSpec("column", 0, client_column="site"), ids)
    assert [ids[p].tolist() for p in parts] == [["a", "a"], ["b", "b"], ["c", "c", "c"]]


def test_small_alpha_dirichlet_is_measurably_skewed():
    labels = np.repeat(np.arange(10), 150)

    def skew(spec):
        return part.label_skew(part.partition(labels, spec), labels, 10)

    iid = skew(part.PartitionSpec("iid", 10, seed=0))
    mild = skew(part.PartitionSpec("dirichlet", 10, alpha=100.0, seed=0))
    strong = skew(part.PartitionSpec("dirichlet", 10, alpha=0.1, seed=0))
    assert iid < 0.15 and mild < 0.15  # sampling noise only
    assert strong > 0.5 > 3 * max(iid, mild)  # most of each client's labels come from a few classes


def test_population_key_includes_the_partitioning_and_the_source_stays_the_table():
    _, _, iid = _population()
    _, _, again = _population("seed=5")  # training seed: same population
    _, _, dirichlet = _population("fl.partition=dirichlet")
    _, _, other = _population("fl.partition_seed=1")
    assert iid.key == again.key
    assert len({iid.key, dirichlet.key, other.key}) == 3
    assert {p.dataset.source.key for p in (iid, dirichlet, other)} == {"digits"}  # one source, one budget
    assert iid.label == "iid, 10 clients, partition seed 0" and "dirichlet(alpha=0.5)" in dirichlet.label
    sizes = iid.train_sizes()
    assert len(sizes) == 10 and sum(len(p) for p in iid.parts) == len(iid.y_pool)


# --- errors: one line, nothing charged -----------------------------------------------


@pytest.mark.parametrize("overrides,match", [
    (["fl.clients_per_round=11"], r"fl.clients_per_round=11 is more than the 10 clients"),
    (["fl.partition=dirichlet", "fl.alpha=0"], r"fl.alpha=0.0 must be > 0"),
    (["fl.partition=dirichlet", "fl.alpha=-1"], r"fl.alpha=-1.0 must be > 0"),
    (["fl.partition=dirichlet", "fl.alpha=0.001", "fl.num_clients=300"], r"client \d+ holds \d training row"),
    (["fl.num_clients=2000"], r"client \d+ holds [01] training row"),
    (["fl.strategy=fedadam"], r"fedadam cannot be used with central DP"),
    (["fl.engine=deployment", "fl.deployment.superlink=127.0.0.1:9"], r"superlink=127.0.0.1:9 is unreachable"),
])
def test_bad_settings_are_one_line_errors_and_charge_nothing(overrides, match, tmp_path, ledger_path):
    with pytest.raises(UserError, match=match) as err:
        privtrain.run("federated", overrides, output_dir=tmp_path / "run")
    assert "\n" not in str(err.value)
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


def test_a_client_with_no_rows_in_a_column_partition_is_refused(tmp_path, ledger_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "label": rng.integers(0, 2, 60),
                          "site": ["s1"] * 30 + ["s2"] * 29 + ["lonely"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(UserError, match=r"fl.partition=column: client \d holds (0|1) training row"):
        privtrain.run("federated", ["dataset=csv", f"dataset.path={tmp_path / 'd.csv'}", "dataset.target=label",
                                    "dataset.infer_schema=true", "fl.partition=column", "fl.client_column=site"],
                      output_dir=tmp_path / "run")
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


# --- accounting --------------------------------------------------------------------


def test_central_epsilon_matches_dp_accounting_for_the_same_noise_and_rounds():
    plan = accounting.plan_central(target_epsilon=3.0, noise_multiplier=None, delta=None, clipping_norm=1.0,
                                   clipping_side="server", rounds=5, clients_per_round=10, num_clients=10)
    pld = dp_accounting.pld.PLDAccountant()
    pld.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(plan.noise_multiplier), 5))
    assert plan.epsilon == pytest.approx(pld.get_epsilon(1e-5), rel=1e-3)
    assert plan.epsilon == pytest.approx(3.0, rel=0.01)  # calibrated to the target
    rdp = dp_accounting.rdp.RdpAccountant()
    rdp.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(plan.noise_multiplier), 5))
    assert rdp.get_epsilon(1e-5) > plan.epsilon  # RDP is looser; PLD is what the ledger uses
    # the analytic Gaussian (progress bar) agrees with PLD, and no sampling amplification is claimed
    assert accounting.gaussian_epsilon(plan.noise_multiplier, 5, 1e-5) == pytest.approx(plan.epsilon, rel=0.01)
    assert type(plan.events[0].event).__name__ == "GaussianDpEvent"


def test_central_accounting_composes_over_rounds():
    eps = [accounting.gaussian_epsilon(2.0, r, 1e-5) for r in (1, 2, 5, 20)]
    assert eps == sorted(eps) and eps[-1] > 2 * eps[0]


def test_central_delta_must_be_below_one_over_clients():
    with pytest.raises(UserError, match=r"privacy.delta=0.2 must lie in \(0, 1/clients\)"):
        accounting.plan_central(target_epsilon=3.0, noise_multiplier=None, delta=0.2, clipping_norm=1.0,
                                clipping_side="server", rounds=5, clients_per_round=5, num_clients=5)


def test_every_privacy_charges_the_source_example_level_and_central_dp_its_population(tmp_path):
    book = ledger.open(tmp_path / "l.db")
    for name in ("central", "dp", "central_local", "none"):
        run, s, pop = _population(f"privacy={name}", "fl.rounds=2")
        central, local = planning.plan(run.privacy, run.model, s, pop)
        mechanisms = planning.mechanisms(run.privacy, s, pop, central, local)
        assert [m.unit for m in mechanisms] == (["example"] if name == "dp" else ["client", "example"]), name
        request = ledger.RunRequest("r", "federated", "cfg", pop.dataset.source, pop.dataset.fingerprint, mechanisms)
        charges = book.charges(request)
        assert {(c.source, c.unit, c.scope) for c in charges} == {
            ("digits", m.unit, pop.key if m.unit == "client" else "") for m in mechanisms}
        example = next(m for m in mechanisms if m.unit == "example")
        if name == "none":
            assert all(math.isinf(m.epsilon) for m in mechanisms)
        elif name == "central":  # a changed example moves its client's clipped update by 2C: multiplier σ/2
            (event,) = example.events
            assert event.event.noise_multiplier == pytest.approx(central.noise_multiplier / 2)
            assert example.epsilon > central.epsilon  # the example bound is looser than the client one here
        else:
            assert 0 < example.epsilon < 3.05


def test_local_plan_bounds_the_worst_client():
    plan = accounting.plan_local(sizes=[20, 100, 400], batch_size=32, local_epochs=1, rounds=4, target_epsilon=2.0,
                                 noise_multiplier=None, delta=1e-5, max_grad_norm=1.0, accountant="rdp")
    eps = [plan.client_epsilon(k, plan.planned_steps[k]) for k in range(3)]
    assert max(eps) == pytest.approx(plan.epsilon) and plan.epsilon <= 2.0 * 1.01
    assert min(eps) < max(eps)  # clients differ; the population's epsilon is the largest


# --- the ClientApp keeps its accountant across rounds ------------------------------------


@pytest.fixture
def flower_identity():
    from flwr.supercore.task_identity import TaskIdentity

    saved = {k: getattr(TaskIdentity, f"_{k}", None) for k in ("task_id", "run_id", "node_id")}
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    for k, v in saved.items():
        setattr(TaskIdentity, f"_{k}", v)


def test_local_dp_client_accountant_persists_and_matches_the_servers_epsilon(flower_identity, tmp_path):
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
    from opacus.accountants import create_accountant

    from privtrain.federated.client_app import _state, make_client_app
    from privtrain.federated.job import in_memory

    run, s, pop = _population("privacy=dp", "fl.rounds=3", "fl.local_epochs=1")
    central, local = planning.plan(run.privacy, run.model, s, pop)
    job = in_memory(s, run.dataset, run.model, pop, central, local, tmp_path)
    app = make_client_app(job)
    k = 4
    context = Context(run_id=1, node_id=7, node_config={"partition-id": k, "num-partitions": 10}, state=RecordDict(),
                      run_config={})
    model = task.build_model(run.model, job.shape)
    reported = []
    for rnd in (1, 2, 3):
        msg = Message(content=RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                          "config": ConfigRecord({"server-round": rnd})}),
                      dst_node_id=7, message_type=MessageType.TRAIN)
        reply = app(msg, context)
        metrics = reply.content["metrics"]
        assert "epsilon" not in metrics  # the server accounts from "dp-steps"; a client's PRV call costs ~1 s
        kept = create_accountant("prv")
        kept.load_state_dict(_state(context)["accountant"])  # what the next round will resume from
        reported.append(kept.get_epsilon(delta=local.delta))
        model.load_state_dict(reply.content["arrays"].to_torch_state_dict())
    steps = 3 * local.steps_per_round(k)
    assert int(metrics["dp-steps"]) == steps
    fed_all = create_accountant("prv")
    fed_all.history = [(local.noise_multiplier, local.sample_rate(k), steps)]
    assert reported[-1] == pytest.approx(fed_all.get_epsilon(delta=local.delta), rel=1e-6)
    one_round = create_accountant("prv")
    one_round.history = [(local.noise_multiplier, local.sample_rate(k), local.steps_per_round(k))]
    assert reported[0] == pytest.approx(one_round.get_epsilon(delta=local.delta), rel=1e-6)
    assert reported[0] < reported[1] < reported[2]  # never reset to a fresh accountant
    assert local.client_epsilon(k, steps) == pytest.approx(reported[-1], rel=1e-6)  # the server's figure
    assert reported[-1] <= 3.0 * 1.01 and float(metrics["weight"]) == len(job.client(k).y_train)
    assert isinstance(next(iter(model.state_dict().values())), torch.Tensor)
