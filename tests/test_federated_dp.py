"""DP-FedAvg with Poisson client sampling: accounting, the noisy release, secret sampling, the server's own counts.

The server loop runs here on :class:`LoopbackGrid`, Flower's ``Grid`` interface delivering each
message to a real privtrain ClientApp in this process (no Ray): the same code a SuperLink drives.
"""

from __future__ import annotations

import math
import uuid

import dp_accounting
import numpy as np
import pytest

from privtrain import config
from privtrain.federated import aggregation as agg
from privtrain.federated import central, planning, sampling, task
from privtrain.privacy.randomness import VOID_NOTE


def _run(*overrides: str):
    s = config.settings("federated", config.compose("federated", list(overrides)))
    pop = task.build_population(task.load_dataset(s.dataset, s.fl), s.fl)
    return s, pop


def _pld(events, delta):
    acc = dp_accounting.pld.PLDAccountant()
    acc.compose(dp_accounting.ComposedDpEvent(list(events)))
    return acc.get_epsilon(delta)


# --- accounting: golden events ---------------------------------------------------------


def test_poisson_plan_composes_poisson_subsampled_gaussians_and_meets_the_target():
    plan = central.plan_central(
        target_epsilon=3.0,
        noise_multiplier=None,
        delta=1e-5,
        clipping_norm=1.0,
        clipping_side="server",
        rounds=20,
        sampling="poisson",
        sample_rate=0.1,
        denominator=50.0,
        num_clients=500,
    )
    sigma = plan.noise_multiplier
    golden = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(sigma)), 20
    )
    assert plan.events == (golden,)
    assert plan.epsilon == pytest.approx(_pld([golden], 1e-5), rel=1e-6)  # a fresh PLD accountant agrees
    assert plan.epsilon == pytest.approx(3.0, rel=0.01) and plan.epsilon <= 3.0 * 1.001  # calibrated
    example = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(sigma / 2)), 20
    )
    assert plan.example_events(20) == (example,)  # sensitivity 2C toward one example, same participation
    slower = central.plan_central(
        target_epsilon=3.0,
        noise_multiplier=None,
        delta=1e-5,
        clipping_norm=1.0,
        clipping_side="server",
        rounds=20,
        sampling="poisson",
        sample_rate=0.2,
        denominator=100.0,
        num_clients=500,
    )
    assert slower.noise_multiplier > sigma  # a larger sampling rate needs more noise: amplification is real


def test_fixed_cohort_is_replace_one_without_amplification():
    plan = central.plan_central(
        target_epsilon=3.0,
        noise_multiplier=None,
        delta=1e-5,
        clipping_norm=1.0,
        clipping_side="server",
        rounds=10,
        sampling="fixed",
        sample_rate=0.1,
        denominator=50.0,
        num_clients=500,
    )
    golden = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(plan.noise_multiplier / 2), 10)
    assert plan.events == (golden,) and plan.example_events(10) == (golden,)
    assert plan.epsilon == pytest.approx(_pld([golden], 1e-5), rel=1e-6)
    assert plan.epsilon == pytest.approx(3.0, rel=0.01)
    fixed_noise = central.plan_central(
        target_epsilon=None,
        noise_multiplier=4.0,
        delta=1e-5,
        clipping_norm=1.0,
        clipping_side="server",
        rounds=10,
        sampling="fixed",
        sample_rate=0.1,
        denominator=50.0,
        num_clients=500,
    )
    add_remove = _pld([dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(4.0), 10)], 1e-5)
    assert fixed_noise.epsilon > 1.9 * add_remove  # the old accounting under-counted a fixed cohort


def test_the_recipe_plans_dp_fedavg_from_the_sampling_settings():
    s, pop = _run("fl.num_clients=100", "fl.clients_per_round=10", "fl.rounds=4")
    c, _ = planning.plan(s.privacy, s.model, s.fl, pop)
    assert (c.sampling, c.sample_rate, c.denominator) == ("poisson", pytest.approx(0.1), pytest.approx(10.0))
    assert type(c.events[0].event).__name__ == "PoissonSampledDpEvent"
    s, pop = _run("fl.num_clients=100", "fl.sampling_rate=0.3")
    assert planning.plan(s.privacy, s.model, s.fl, pop)[0].denominator == pytest.approx(30.0)
    (client, example) = planning.mechanisms(s.privacy, s.fl, pop, *planning.plan(s.privacy, s.model, s.fl, pop))
    assert example.events[0].event.event.noise_multiplier == pytest.approx(
        client.events[0].event.event.noise_multiplier / 2
    )


def test_reproducible_noise_voids_both_guarantees():
    s, pop = _run("reproducible_noise=true", "fl.rounds=2")
    c, local = planning.plan(s.privacy, s.model, s.fl, pop)
    mechanisms = planning.mechanisms(s.privacy, s.fl, pop, c, local)
    assert {m.unit for m in mechanisms} == {"client", "example"}
    assert all(math.isinf(m.epsilon) and type(m.events[0]).__name__ == "NonPrivateDpEvent" for m in mechanisms)
    guarantees, events = planning.outcome(s.fl, pop, c, local, {"releases": 2}, 1e-5)
    assert all(math.isinf(g.epsilon) and VOID_NOTE in g.notes for g in guarantees)
    assert set(events) == {"client", "example"}


# --- the noisy release -----------------------------------------------------------------


def _model(rng) -> dict:
    return {"w": rng.normal(size=(6, 5)), "b": rng.normal(size=5)}


def test_dp_fedavg_releases_global_plus_noisy_sum_of_clipped_updates_over_qn():
    rng = np.random.default_rng(0)
    global_arrays = _model(rng)
    updates = [{k: rng.normal(scale=scale, size=v.shape) for k, v in global_arrays.items()} for scale in (0.01, 3, 0.2)]
    C, sigma, qn = 1.5, 0.8, 2.5
    released = agg.dp_fedavg(
        global_arrays, updates, clipping_norm=C, noise_multiplier=sigma, denominator=qn, rng=np.random.default_rng(7)
    )
    noise = np.random.default_rng(7)  # the same generator: drawn array by array in the model's order
    for k in global_arrays:
        clipped = sum(u[k] * min(1.0, C / math.sqrt(sum(float((v**2).sum()) for v in u.values()))) for u in updates)
        expected = global_arrays[k] + (clipped + noise.normal(0.0, sigma * C, size=global_arrays[k].shape)) / qn
        np.testing.assert_allclose(released[k], expected, rtol=1e-12, atol=1e-14)


def test_an_update_longer_than_c_is_clipped_to_c_and_a_short_one_is_kept():
    long = {"w": np.full((3, 3), 2.0), "b": np.ones(3)}
    clipped = agg.clip(long, 1.0)
    assert agg.l2_norm(clipped) == pytest.approx(1.0)
    assert np.allclose(clipped["w"] / clipped["b"][0], long["w"] / long["b"][0])  # same direction
    short = {"w": np.full((3, 3), 0.01), "b": np.zeros(3)}
    assert all(np.array_equal(agg.clip(short, 1.0)[k], short[k]) for k in short)


def test_a_round_without_clients_is_released_with_noise_of_std_sigma_c_over_qn():
    global_arrays = {"w": np.zeros(20_000)}
    released = agg.dp_fedavg(
        global_arrays, [], clipping_norm=2.0, noise_multiplier=1.5, denominator=10.0, rng=np.random.default_rng(1)
    )
    assert np.std(released["w"] * 10.0) == pytest.approx(1.5 * 2.0, rel=0.03)


def test_malformed_or_non_finite_replies_contribute_nothing():
    g = {"w": np.zeros(3, np.float32)}
    assert agg.update_of({"w": np.array([1.0, np.nan, 0.0])}, g) is None
    assert agg.update_of({"w": np.zeros(4)}, g) is None
    assert agg.update_of({"other": np.zeros(3)}, g) is None
    assert np.array_equal(agg.update_of({"w": np.ones(3)}, g)["w"], np.ones(3))


# --- sampling: Poisson, and secret -----------------------------------------------------


def test_poisson_inclusion_rate_is_q_and_fixed_cohorts_are_exact():
    nodes = list(range(1000, 1200))
    sampler = sampling.ClientSampler("poisson", rate=0.1, cohort=0, rng=np.random.default_rng(3))
    counts = np.zeros(len(nodes))
    sizes = []
    for _ in range(2000):
        chosen = sampler.sample(nodes)
        sizes.append(len(chosen))
        counts[[n - 1000 for n in chosen]] += 1
    rates = counts / 2000
    assert rates.mean() == pytest.approx(0.1, abs=0.003)
    assert np.abs(rates - 0.1).max() < 5 * math.sqrt(0.1 * 0.9 / 2000)  # every node, not only on average
    assert min(sizes) < 20 < max(sizes)  # the cohort size varies, as Poisson sampling does
    fixed = sampling.ClientSampler("fixed", rate=0.1, cohort=20, rng=np.random.default_rng(3))
    assert {len(fixed.sample(nodes)) for _ in range(50)} == {20}


@pytest.mark.parametrize("reproducible", [False, True])
def test_client_sampling_and_server_noise_are_secret_unless_reproducible(reproducible):
    from privtrain.federated.rounds import ServerStep

    extra = ["reproducible_noise=true"] if reproducible else []
    s, _ = _run("fl.num_clients=100", "fl.clients_per_round=10", "seed=0", *extra)
    nodes = list(range(100))
    draws = [
        [tuple(sampler.sample(nodes)) for _ in range(20)]
        for sampler in (sampling.for_job(s.fl, 100), sampling.for_job(s.fl, 100))
    ]
    assert (draws[0] == draws[1]) is reproducible  # 20 Poisson draws of 100 nodes never coincide by chance
    job = _Job(s.fl)
    noises = [ServerStep(job).noise.normal(size=5) for _ in range(2)]
    assert np.array_equal(*noises) is reproducible


class _Job:
    """The fields of a Job that ServerStep reads."""

    def __init__(self, fl):
        self.settings, self.central = fl, object()


# --- the server loop on Flower's Grid interface ------------------------------------------


class LoopbackGrid:
    """A Flower ``Grid`` that hands each message to a ClientApp in this process, one Context per node."""

    def __init__(self, app_for_node, partitions: dict[int, int]):
        from flwr.app import Context, RecordDict

        self.app_for_node = app_for_node
        self.contexts = {
            n: Context(
                run_id=1,
                node_id=n,
                node_config={"partition-id": k, "num-partitions": len(partitions)},
                state=RecordDict(),
                run_config={},
            )
            for n, k in partitions.items()
        }
        self.received: list[int] = []  # every TRAIN message's destination, as delivered

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            node = msg.metadata.dst_node_id
            if msg.metadata.message_type == "train":
                self.received.append(node)
            reply = self.app_for_node(node)(msg, self.contexts[node])
            if reply is not None:
                replies.append(reply)
        return replies


def _job(tmp_path, *overrides):
    from privtrain.federated.job import in_memory

    s, pop = _run(*overrides)
    c, local = planning.plan(s.privacy, s.model, s.fl, pop)
    return in_memory(s.fl, s.dataset, s.model, pop, c, local, tmp_path)


def _liar(app):
    """A ClientApp that trains honestly but reports a million DP steps and epsilon 0."""
    from flwr.app import Message, MetricRecord, RecordDict

    def call(msg, context):
        reply = app(msg, context)
        if msg.metadata.message_type != "train":
            return reply
        metrics = dict(reply.content["metrics"])
        metrics.update({"dp-steps": 10**6, "epsilon": 0.0, "partition-id": metrics["partition-id"]})
        content = RecordDict({"arrays": reply.content["arrays"], "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    return call


def test_local_dp_is_charged_from_the_messages_the_server_sent(flower_identity, tmp_path):
    from privtrain.federated.client_app import make_client_app
    from privtrain.federated.server_app import run_server

    args = (
        "privacy=dp",
        "fl.num_clients=4",
        "fl.rounds=3",
        "fl.local_epochs=1",
        "fl.sampling_rate=0.6",
        "recipe.progress=false",
    )
    histories = []
    for lying in (False, True):
        job = _job(tmp_path / str(lying), *args)
        app = make_client_app(job)
        partitions = {501 + k: k for k in range(4)}
        grid = LoopbackGrid(
            lambda n, app=app, lying=lying, partitions=partitions: _liar(app) if lying and partitions[n] == 2 else app,
            partitions,
        )
        history = run_server(grid, job, progress=False)
        sent = {partitions[n]: grid.received.count(n) for n in partitions}
        assert history["client_steps"] == {k: n * job.local.steps_per_round(k) for k, n in sent.items() if n}
        histories.append((history, sent))
    (honest, _), (lied, sent) = histories
    assert sent[2] > 0 and lied["unknown_node_messages"] == 0  # the liar was sampled, and said who it is ...
    assert lied["client_steps"] == honest["client_steps"]  # ... but its report changed nothing (public sampling)
    assert lied["local_worst"] == honest["local_worst"]
    assert lied["local_worst"]["epsilon"] == pytest.approx(job.local.worst(lied["client_steps"])[1])


def test_a_failed_client_is_still_charged_and_every_round_is_released(flower_identity, tmp_path):
    from privtrain.federated.client_app import make_client_app
    from privtrain.federated.server_app import run_server

    job = _job(
        tmp_path,
        "privacy=central_local",
        "fl.num_clients=3",
        "fl.fraction=1.0",
        "fl.rounds=3",
        "fl.local_epochs=1",
        "recipe.progress=false",
    )
    app = make_client_app(job)
    partitions = {11: 0, 12: 1, 13: 2}

    def silent(msg, context):  # trains, then its reply is lost
        app(msg, context)
        return None

    grid = LoopbackGrid(lambda n: silent if n == 13 else app, partitions)
    history = run_server(grid, job, progress=False)
    assert history["releases"] == 3 and [r["releases"] for r in history["rounds"][1:]] == [1, 2, 3]
    assert history["unknown_node_messages"] == 3  # node 13 never said which partition it serves
    steps = {k: 3 * job.local.steps_per_round(k) for k in (0, 1)}
    assert history["client_steps"] == steps
    k, k_steps, eps = job.local.worst_case(steps, 3)
    assert history["local_worst"] == {"client": k, "steps": k_steps, "epsilon": eps}
    assert eps >= job.local.client_epsilon(2, 3 * job.local.steps_per_round(2)) * (1 - 1e-9)
    assert all(r["epsilon_client"] > 0 for r in history["rounds"][1:])


@pytest.mark.parametrize("reproducible", [False, True])
def test_replaying_a_local_dp_round_with_the_public_seed_gives_other_weights(flower_identity, tmp_path, reproducible):
    """The replay attack: same public seed, same inputs, same round. The noise must not replay."""
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

    from privtrain.federated.client_app import make_client_app

    extra = ["reproducible_noise=true"] if reproducible else []
    job = _job(tmp_path, "privacy=dp", "fl.rounds=1", "fl.local_epochs=1", *extra)
    assert job.settings.reproducible_noise is reproducible
    torch.manual_seed(0)
    model = task.build_model(job.model, job.shape)
    app = make_client_app(job)

    def one_round():
        msg = Message(
            content=RecordDict(
                {"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord({"server-round": 1})}
            ),
            dst_node_id=7,
            message_type="train",
        )
        context = Context(
            run_id=1,
            node_id=7,
            node_config={"partition-id": 2, "num-partitions": 10},
            state=RecordDict(),
            run_config={},
        )
        return app(msg, context).content["arrays"].to_torch_state_dict()

    first, second = one_round(), one_round()
    same = all(torch.equal(first[k], second[k]) for k in first)
    assert same is reproducible
