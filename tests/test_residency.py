"""Residency of federated clients: a client outside the source's allowed regions is refused before it trains.

Three places: the run's facts (``fl.regions``, before anything is read or charged), the ServerApp's metadata-only
query on Flower's simulation engine (before any model is sent), and the ClientApp itself (before it loads a row).
"""

from __future__ import annotations

import dataclasses

import pytest
from test_federated import _context, _job, _population, _train_message

import privtrain
from privtrain import ledger
from privtrain.errors import UserError

FAST = [
    "fl.num_clients=4",
    "fl.rounds=1",
    "fl.local_epochs=1",
    "fl.fraction=1.0",
    "fl.client_sampling=fixed",
    "recipe.progress=false",
]


class _Watched:
    """The clients' rows, recording which client's rows were handed out."""

    def __init__(self, rows) -> None:
        self.rows, self.read = rows, []

    def client(self, k: int):
        self.read.append(k)
        return self.rows.client(k)


def test_fl_regions_outside_the_sources_regions_are_refused_before_anything_is_read(ledger_path, tmp_path):
    book = ledger.open()
    book.set_provenance("digits", regions="eu-west", purposes="research", reason="DPIA")
    before = [e.hash for e in book.entries()]
    with pytest.raises(UserError) as info:
        privtrain.run(
            "federated",
            [
                *FAST,
                "privacy=none",
                "ledger.allow_non_private=true",
                "run.purpose=research",
                "site.region=eu-west",
                "fl.regions=[eu-west,eu-west,us-east,eu-west]",
            ],
            output_dir=tmp_path / "r",
        )
    message = str(info.value)
    assert "\n" not in message and "federated clients in eu-west" in message
    assert "fl.regions puts clients in us-east" in message and "Nothing was read or charged" in message
    assert [e.hash for e in ledger.open().entries()] == before and not (tmp_path / "r").exists()
    with pytest.raises(UserError, match="fl.regions has 3 regions for 4 clients"):
        privtrain.run("federated", [*FAST, "fl.regions=[eu-west,eu-west,eu-west]"], output_dir=tmp_path / "r")


def test_the_client_refuses_to_train_outside_the_allowed_regions_before_loading_a_row(flower_identity, tmp_path):
    from privtrain.federated import task
    from privtrain.federated.client_app import make_client_app

    run, job = _job(tmp_path, "privacy=none", "fl.num_clients=4", "fl.rounds=1", "fl.local_epochs=1")
    watched = _Watched(job.rows)
    job = dataclasses.replace(
        job.with_rows(watched), settings=dataclasses.replace(job.settings, allowed_regions=("eu-west",))
    )
    app = make_client_app(job)
    message = _train_message(task.build_model(run.model, job.shape), 1)
    elsewhere = _context(0)
    elsewhere.node_config["region"] = "us-east"  # what its SuperNode declares (--node-config "region='us-east'")
    with pytest.raises(PermissionError, match="client 0 in us-east refuses to train"):
        app(message, elsewhere)
    with pytest.raises(PermissionError, match="client 1 in no declared region"):
        app(message, _context(1))  # a node that declares nothing is not presumed to be inside
    assert watched.read == []  # no row was loaded by a refused client
    inside = _context(2)
    inside.node_config["region"] = "eu-west"
    reply = app(message, inside)
    assert "arrays" in reply.content and watched.read == [2]


@pytest.mark.slow
def test_the_server_stops_before_any_model_is_sent_to_a_node_outside_the_regions(tmp_path):
    """Flower's simulation engine: the ServerApp's metadata-only query finds the node and stops the run."""
    from privtrain.federated import simulation

    _, job = _job(tmp_path, "privacy=none", *FAST)
    settings = dataclasses.replace(
        job.settings,
        regions=("eu-west", "eu-west", "us-east", "eu-west"),
        allowed_regions=("eu-west",),
        reuse_ray=False,
        num_cpus=2.0,
    )
    with pytest.raises(UserError) as info:
        simulation.run(dataclasses.replace(job, settings=settings))
    assert "is in us-east, outside the source's allowed regions (eu-west)" in str(info.value)
    assert "no model or data was sent to any node" in str(info.value)
    assert not (tmp_path / "rounds.jsonl").exists() and not (tmp_path / "history.json").exists()
    ok = dataclasses.replace(settings, regions=("eu-west",))
    simulation.run(dataclasses.replace(job, settings=ok))
    assert (tmp_path / "history.json").is_file()


@pytest.mark.slow
def test_a_real_supernode_declaring_another_region_is_refused_before_any_model_is_sent(tmp_path):
    """Real flower-superlink and flower-supernode processes: the second SuperNode declares region='us-east' in its
    node config (fl.regions feeds the node config of the SuperNodes privtrain starts); the ServerApp's query stops
    the run with one line, before the first TRAIN message."""
    from privtrain.federated import deployment, planning
    from privtrain.federated.residency import REFUSAL

    run, fl, pop = _population(
        "privacy=none",
        "fl.engine=deployment",
        "fl.num_clients=2",
        "fl.rounds=1",
        "fl.local_epochs=1",
        "fl.federated_evaluation=false",
        "recipe.progress=false",
    )
    central, local = planning.plan(run.privacy, run.model, fl, pop)
    fl = dataclasses.replace(fl, regions=("eu-west", "us-east"), allowed_regions=("eu-west",))
    with pytest.raises(UserError) as info:
        deployment.run_job(fl, run.dataset, run.model, pop, central, local, tmp_path)
    message = str(info.value)
    assert "\n" not in message and "is in us-east, outside the source's allowed regions (eu-west)" in message
    assert not (tmp_path / "rounds.jsonl").exists() and not (tmp_path / REFUSAL).exists()
    inside = dataclasses.replace(fl, regions=("eu-west",))  # every node answers eu-west: the rounds run
    history = deployment.run_job(inside, run.dataset, run.model, pop, central, local, tmp_path / "ok")
    assert [r["round"] for r in history["rounds"]] == [0, 1]


def test_clients_privtrain_runs_itself_execute_at_the_runs_region_unless_fl_regions_places_them(tmp_path):
    from privtrain.federated import residency

    _, fl, _ = _population("privacy=none", "fl.num_clients=4")
    governance = {"allowed_regions": ["eu-west"], "region": "eu-west"}
    here = residency.for_run(fl, governance)
    assert here.allowed_regions == ("eu-west",) and [here.region_of(k) for k in range(4)] == ["eu-west"] * 4
    placed = residency.for_run(
        dataclasses.replace(fl, regions=("eu-west", "us-east", "eu-west", "eu-west")), governance
    )
    assert placed.region_of(1) == "us-east"  # fl.regions is never overridden
    remote = residency.for_run(dataclasses.replace(fl, superlink="10.0.0.1:9093"), governance)
    assert remote.regions == () and remote.region_of(0) is None  # remote SuperNodes must declare their own
    assert residency.for_run(fl, {"allowed_regions": None, "region": "eu-west"}) is fl  # nothing restricted
