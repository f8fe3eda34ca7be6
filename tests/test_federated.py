"""The federated recipe's parts, without Ray or Flower processes: populations, errors, local accounting, the ClientApp."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

import privtrain
from privtrain import config, ledger
from privtrain.errors import UserError
from privtrain.federated import accounting, planning, task
from privtrain.federated import partition as part


def _settings(*overrides: str):
    return config.settings("federated", config.compose("federated", list(overrides)))


def _population(*overrides: str):
    s = _settings(*overrides)
    return s, s.fl, task.build_population(task.load_dataset(s.dataset, s.fl), s.fl)


def _client_rows(pop: task.Population, k: int) -> Counter:
    """Client ``k``'s training rows as a multiset of row contents (not indices)."""
    return Counter(
        x.tobytes() + bytes([int(y)]) for x, y in zip(pop.x_pool[pop.train_parts[k]], pop.y_pool[pop.train_parts[k]])
    )


# --- keyed, per-row partitions -------------------------------------------------------


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_partitions_are_disjoint_complete_and_deterministic(kind):
    _, _, a = _population(f"fl.partition={kind}", "fl.num_clients=7", "fl.partition_seed=3")
    _, _, b = _population(f"fl.partition={kind}", "fl.num_clients=7", "fl.partition_seed=3")
    assert all(np.array_equal(x, y) for x, y in zip(a.train_parts, b.train_parts))
    joined = np.concatenate([*a.train_parts, *a.eval_parts])
    assert len(joined) == len(np.unique(joined)) == len(a.y_pool)  # disjoint and complete
    _, _, other = _population(f"fl.partition={kind}", "fl.num_clients=7", "fl.partition_seed=4")
    assert not all(np.array_equal(x, y) for x, y in zip(a.train_parts, other.train_parts))


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_removing_one_row_changes_exactly_one_clients_training_rows(kind):
    s, fl, full = _population(f"fl.partition={kind}", "fl.num_clients=20")
    dataset = task.load_dataset(s.dataset, fl)
    k = int(np.argmax(full.train_sizes()))
    victim = full.x_pool[full.train_parts[k][0]]  # one of client k's training rows
    x_all = dataset.schema.transform(dataset.frame)
    row = int(np.flatnonzero((x_all == victim).all(axis=1))[0])
    smaller = task.build_population(
        dataclasses.replace(dataset, frame=dataset.frame.drop(index=row).reset_index(drop=True)), fl
    )
    changed = [j for j in range(full.num_clients) if _client_rows(full, j) != _client_rows(smaller, j)]
    assert changed == [k]
    assert sum((_client_rows(full, k) - _client_rows(smaller, k)).values()) == 1  # exactly that row
    assert np.array_equal(full.x_test, smaller.x_test)  # the held-out split is untouched too


def test_column_partition_follows_the_client_column():
    ids = np.array(["b", "a", "b", "c", "a", "c", "c"])
    clients = part.assign(np.zeros(7), np.zeros(7, int), 1, part.PartitionSpec("column", 0, client_column="site"), ids)
    assert [sorted(ids[clients == k].tolist()) for k in range(3)] == [["a", "a"], ["b", "b"], ["c", "c", "c"]]


def test_iid_assignment_is_the_uniforms_bucket_and_dirichlet_follows_public_shares():
    u = np.linspace(0, 0.999, 1000)
    iid = part.assign(u, np.zeros(1000, int), 1, part.PartitionSpec("iid", 4))
    assert np.bincount(iid).tolist() == [250, 250, 250, 250]
    spec = part.PartitionSpec("dirichlet", 5, alpha=0.3, seed=1)
    shares = part.dirichlet_shares(spec, 2)
    labels = np.repeat([0, 1], 500)
    clients = part.assign(np.tile(np.linspace(0, 0.999, 500), 2), labels, 2, spec)
    for c in (0, 1):  # a class's rows spread over clients as its public shares say
        assert np.bincount(clients[labels == c], minlength=5) / 500 == pytest.approx(shares[c], abs=0.01)


def test_small_alpha_dirichlet_is_measurably_skewed():
    def skew(*overrides):  # mean total-variation distance of the clients' label mixes from the pool's
        _, _, pop = _population("fl.num_clients=10", *overrides)  # ~140 rows each: iid mixes match the pool
        overall = np.bincount(pop.y_pool, minlength=10) / len(pop.y_pool)
        tv = [
            0.5 * np.abs(np.bincount(pop.y_pool[p], minlength=10) / len(p) - overall).sum() for p in pop.parts if len(p)
        ]
        return float(np.mean(tv))

    iid = skew("fl.partition=iid")
    strong = skew("fl.partition=dirichlet", "fl.alpha=0.1")
    assert iid < 0.2 and strong > 0.5 > 2 * iid


def test_population_key_includes_the_partitioning_and_the_source_stays_the_table():
    _, _, iid = _population()
    _, _, again = _population("seed=5")  # training seed: same population
    _, _, dirichlet = _population("fl.partition=dirichlet")
    _, _, other = _population("fl.partition_seed=1")
    assert iid.key == again.key
    assert len({iid.key, dirichlet.key, other.key}) == 3
    assert {p.dataset.source.key for p in (iid, dirichlet, other)} == {"digits"}  # one source, one budget
    assert iid.label == "iid, 500 clients, partition seed 0" and "dirichlet(alpha=0.5)" in dirichlet.label
    assert sum(iid.train_sizes()) + sum(iid.eval_sizes()) == len(iid.y_pool)


def test_large_populations_may_hold_empty_clients_and_rows_are_not_copied_per_client():
    _, _, pop = _population("fl.num_clients=2000")
    sizes = pop.train_sizes()
    assert len(sizes) == 2000 and 0 in sizes and sum(sizes) > 1000
    rows = pop.rows()
    assert rows.x is pop.x_pool  # one pool, index arrays per client
    empty = sizes.index(0)
    assert len(rows.client(empty).y_train) == 0
    summary = part.summary(pop.train_sizes(), pop.eval_sizes())
    assert summary["clients_without_training_rows"] == sizes.count(0)
    assert not any("label" in key or "hist" in key or "skew" in key for key in summary)  # sizes only


def _csv(tmp_path, frame, *extra):
    frame.to_csv(tmp_path / "d.csv", index=False)
    return ["dataset=csv", f"dataset.path={tmp_path / 'd.csv'}", "dataset.target=label", *extra]


def test_unknown_labels_are_neither_counted_nor_shown(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": np.linspace(0, 1, 40), "label": ["x", "y"] * 19 + ["SECRET-42", "x"]})
    overrides = _csv(tmp_path, frame, "+dataset.schema={a: {min: 0, max: 1}, label: {categories: [x, y]}}")
    s = _settings(*overrides)
    with pytest.raises(UserError) as err:
        task.build_population(task.load_dataset(s.dataset, s.fl), s.fl)
    message = str(err.value)
    assert "SECRET-42" not in message and "some rows hold a label" in message and "\n" not in message
    assert "1 row" not in message  # a count of the offending rows is a fact about private data too


def test_a_population_where_no_client_trains_is_refused(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": np.linspace(0, 1, 12), "label": ["x", "y"] * 6})
    overrides = _csv(
        tmp_path,
        frame,
        "+dataset.schema={a: {min: 0, max: 1}, label: {categories: [x, y]}}",
        "fl.client_test_size=0.999",
    )
    s = _settings(*overrides)
    with pytest.raises(UserError, match=r"no client holds a training row"):
        task.build_population(task.load_dataset(s.dataset, s.fl), s.fl)


# --- errors: one line, nothing charged -----------------------------------------------


@pytest.mark.parametrize(
    "overrides,match",
    [
        (
            ["fl.client_sampling=fixed", "fl.clients_per_round=501"],
            r"fl.clients_per_round=501 is more than the 500 clients",
        ),
        (["fl.partition=dirichlet", "fl.alpha=0"], r"fl.alpha=0.0 must be > 0"),
        (["fl.sampling_rate=1.5"], r"fl.sampling_rate=1.5 must lie in \(0, 1\]"),
        (["fl.client_sampling=fixed", "fl.sampling_rate=0.5"], r"fl.sampling_rate is the Poisson sampling rate"),
        (["fl.client_sampling=random"], r"fl.client_sampling='random' is unknown"),
        (["fl.strategy=fedadam"], r"fedadam cannot be used with central DP"),
        (["fl.engine=deployment", "fl.deployment.superlink=127.0.0.1:9"], r"superlink=127.0.0.1:9 is unreachable"),
    ],
)
def test_bad_settings_are_one_line_errors_and_charge_nothing(overrides, match, tmp_path, ledger_path):
    with pytest.raises(UserError, match=match) as err:
        privtrain.run("federated", overrides, output_dir=tmp_path / "run")
    assert "\n" not in str(err.value)
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []


# --- local DP: the server's own counts -------------------------------------------------


def test_local_plan_bounds_the_worst_client_and_skips_empty_ones():
    plan = accounting.plan_local(
        sizes=[20, 100, 400, 0],
        batch_size=32,
        local_epochs=1,
        rounds=4,
        target_epsilon=2.0,
        noise_multiplier=None,
        delta=1e-5,
        max_grad_norm=1.0,
        accountant="rdp",
    )
    eps = [plan.client_epsilon(k, plan.planned_steps[k]) for k in range(3)]
    assert max(eps) == pytest.approx(plan.epsilon) and plan.epsilon <= 2.0 * 1.01
    assert min(eps) < max(eps)  # clients differ; the population's epsilon is the largest
    assert plan.steps_per_round(3) == 0 and 3 not in plan.planned_steps  # a client without rows never trains


def test_train_counts_charge_messages_sent_and_the_worst_case_for_unknown_nodes():
    plan = accounting.plan_local(
        sizes=[40, 400],
        batch_size=32,
        local_epochs=1,
        rounds=10,
        target_epsilon=None,
        noise_multiplier=1.0,
        delta=1e-5,
        max_grad_norm=1.0,
        accountant="rdp",
    )
    counts = accounting.TrainCounts()
    for _ in range(3):
        counts.record_sent([101, 102, 103])
    assert counts.learn(101, 0) and counts.learn(102, 1)
    assert not counts.learn(104, 1)  # a second node claiming partition 1: its update is not aggregated ...
    counts.record_sent([104])
    steps = counts.steps(plan.steps_per_round)
    assert steps == {0: 3 * 2, 1: 3 * 13 + 13}  # ... but what it may have trained is charged to partition 1
    assert counts.unknown_messages() == 3  # node 103 never said who it is
    k, k_steps, eps = plan.worst_case(steps, counts.unknown_messages())
    candidates = {0: plan.client_epsilon(0, 6 + 3 * 2), 1: plan.client_epsilon(1, 52 + 3 * 13)}
    assert eps == pytest.approx(max(candidates.values())) and k == max(candidates, key=candidates.get)
    assert counts.learn(101, 0) and not counts.learn(101, 1)  # contradicting itself: now unknown (worst case)
    assert counts.unknown_messages() == 6


def test_every_privacy_charges_the_source_example_level_and_central_dp_its_population(tmp_path):
    book = ledger.open(tmp_path / "l.db")
    for name in ("central", "dp", "central_local", "none"):
        run, s, pop = _population(f"privacy={name}", "fl.rounds=2")
        central, local = planning.plan(run.privacy, run.model, s, pop)
        mechanisms = planning.mechanisms(run.privacy, s, pop, central, local)
        assert [m.unit for m in mechanisms] == (["example"] if name == "dp" else ["client", "example"]), name
        access = ledger.Access(pop.dataset.source, pop.dataset.fingerprint, mechanisms)
        request = ledger.RunRequest.of("federated", access, config_hash="cfg", ledger=ledger.LedgerSettings())
        charges = book.charges(request)
        assert {(c.source, c.unit, c.scope) for c in charges} == {
            ("digits", m.unit, pop.key if m.unit == "client" else "") for m in mechanisms
        }
        if name == "none":
            assert all(math.isinf(m.epsilon) for m in mechanisms)
        elif name != "central":
            assert 0 < next(m for m in mechanisms if m.unit == "example").epsilon < 3.05


# --- the ClientApp ------------------------------------------------------------------


def _train_message(model, server_round: int, **config):
    from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

    return Message(
        content=RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "config": ConfigRecord({"server-round": server_round, **config}),
            }
        ),
        dst_node_id=7,
        message_type=MessageType.TRAIN,
    )


def _context(k: int):
    from flwr.app import Context, RecordDict

    return Context(
        run_id=1, node_id=7, node_config={"partition-id": k, "num-partitions": 10}, state=RecordDict(), run_config={}
    )


def _job(tmp_path, *overrides):
    from privtrain.federated.job import in_memory

    run, s, pop = _population(*overrides)
    central, local = planning.plan(run.privacy, run.model, s, pop)
    return run, in_memory(s, run.dataset, run.model, pop, central, local, tmp_path)


def test_local_dp_client_accountant_persists_and_sends_no_training_statistics(flower_identity, tmp_path):
    from opacus.accountants import create_accountant

    from privtrain.federated.client_app import _state, make_client_app

    run, job = _job(tmp_path, "privacy=dp", "fl.rounds=3", "fl.local_epochs=1")
    local, app, k = job.local, make_client_app(job), 4
    context = _context(k)
    model = task.build_model(run.model, job.shape)
    reported = []
    for rnd in (1, 2, 3):
        reply = app(_train_message(model, rnd), context)
        metrics = reply.content["metrics"]
        assert set(metrics) == {"partition-id"}  # no steps, epsilon or loss: the server counts for itself
        kept = create_accountant("prv")
        kept.load_state_dict(_state(context)["accountant"])  # what the next round will resume from
        reported.append(kept.get_epsilon(delta=local.delta))
        model.load_state_dict(reply.content["arrays"].to_torch_state_dict())
    steps = 3 * local.steps_per_round(k)
    fed_all = create_accountant("prv")
    fed_all.history = [(local.noise_multiplier, local.sample_rate(k), steps)]
    assert reported[-1] == pytest.approx(fed_all.get_epsilon(delta=local.delta), rel=1e-6)
    assert reported[0] < reported[1] < reported[2]  # never reset to a fresh accountant
    assert local.client_epsilon(k, steps) == pytest.approx(reported[-1], rel=1e-6)  # the server's figure
    assert job.steps_per_round(k) == local.steps_per_round(k)  # the server's count per message agrees


def test_only_a_non_private_client_sends_its_training_loss(flower_identity, tmp_path):
    from privtrain.federated.client_app import make_client_app

    for privacy, expected in (("none", {"partition-id", "train-loss"}), ("central", {"partition-id"})):
        run, job = _job(tmp_path / privacy, f"privacy={privacy}", "fl.rounds=1", "fl.local_epochs=1")
        reply = make_client_app(job)(_train_message(task.build_model(run.model, job.shape), 1), _context(0))
        assert set(reply.content["metrics"]) == expected, privacy


def test_client_side_clipping_bounds_the_update(flower_identity, tmp_path):
    import torch

    from privtrain.federated.client_app import make_client_app

    run, job = _job(tmp_path, "privacy.clipping_side=client", "fl.rounds=1", "fl.lr=5.0")
    model = task.build_model(run.model, job.shape)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    reply = make_client_app(job)(_train_message(model, 1, **{"clipping-norm": 0.01}), _context(0))
    new = reply.content["arrays"].to_torch_state_dict()
    norm = float(torch.sqrt(sum(((new[k].double() - sent[k].double()) ** 2).sum() for k in sent)))
    assert norm == pytest.approx(0.01, rel=1e-4)
