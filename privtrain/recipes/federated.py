"""Recipe ``federated``: federated learning on Flower, with client-level and/or example-level DP.

Features and the keys that turn them on:

- engine:                 ``fl.engine=simulation`` (in-process, default) | ``deployment`` (SuperLink + SuperNodes)
- clients, partitioning:  ``fl.num_clients``, ``fl.partition=iid|dirichlet|column``, ``fl.alpha``, ``fl.client_column``
- rounds, sampling:       ``fl.rounds``, ``fl.client_sampling=poisson|fixed``, ``fl.sampling_rate`` / ``fl.clients_per_round``
- strategy:               ``fl.strategy=fedavg|fedprox|fedadam`` (``fl.proximal_mu``, ``fl.server_lr``)
- client training:        ``fl.local_epochs``, ``fl.batch_size``, ``fl.optimizer``, ``fl.lr``
- central DP (client):    ``privacy=central`` (default): ``privacy.target_epsilon``, ``privacy.clipping_norm``,
                          ``privacy.clipping_side=server|client``
- local DP (example):     ``privacy=dp``: DP-SGD in every client, accountant kept across rounds
- both (two units):       ``privacy=central_local`` (``privacy.local.*``)
- non-private baseline:   ``privacy=none`` (needs ``ledger.allow_non_private=true`` on a budgeted source)
- dry run:                ``--dry-run`` / ``ledger.plan_only=true``

Every run charges its source's example-level budget (see :mod:`privtrain.federated.planning` for
what central DP bounds there), and central DP also its population's client-level budget.
:func:`plan` loads the table and splits it into clients (public facts: sizes and partitioning)
and plans the mechanisms; the API has the ledger reserve them; :func:`train` hands the job to the
engine, which reads the clients' rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from privtrain.artifacts import run_files
from privtrain.ledger import Access
from privtrain.result import Outcome, Reserved, RunResult

if TYPE_CHECKING:
    from privtrain.config import RunSettings
    from privtrain.federated.accounting import LocalPlan
    from privtrain.federated.central import CentralPlan
    from privtrain.federated.task import Population


@dataclass(frozen=True)
class Planned:
    settings: RunSettings
    population: Population
    central: CentralPlan | None
    local: LocalPlan | None
    example_delta: float
    access: Access
    dataset_info: dict


def plan(s: RunSettings) -> Planned:
    """Load the table, split it into clients (public sizes and partitioning) and plan the mechanisms."""
    from privtrain.federated import planning, report, task

    fl = s.fl
    assert fl is not None  # the federated recipe's group: config.settings always sets it
    planning.check_combination(fl)
    if fl.engine == "deployment":
        from privtrain.federated import deployment

        deployment.preflight(fl)  # an unreachable SuperLink fails here, before anything is charged
    population = task.build_population(task.load_dataset(s.dataset, fl), fl)
    central, local = planning.plan(s.privacy, s.model, fl, population)
    mechanisms = planning.mechanisms(s.privacy, fl, population, central, local)
    example = next(m for m in mechanisms if m.unit == "example")
    dataset = population.dataset
    access = Access(
        source=dataset.source,
        fingerprint=dataset.fingerprint,
        mechanisms=mechanisms,
        table=dataset.identity_table,
        id_column=dataset.id_column,
    )
    if fl.engine == "simulation" and not s.ledger.plan_only:
        from privtrain.federated import simulation

        simulation.preflight(fl)  # a Ray runtime that cannot start fails here too (a dry run starts none)
    return Planned(s, population, central, local, example.delta, access, report.dataset_info(population))


def train(p: Planned, reserved: Reserved, output_dir: Path) -> Outcome:
    """Run the rounds on the engine, evaluate the final global model and write the artifacts."""
    from privtrain.artifacts import sealed
    from privtrain.federated import planning, report, residency

    s, output_dir = p.settings, Path(output_dir).resolve()
    assert s.fl is not None
    ledger_info = reserved.summary()
    fl = residency.for_run(s.fl, ledger_info.get("governance"))  # the apps refuse nodes outside the allowed regions
    started = time.perf_counter()
    history = _engine(fl).run_job(fl, s.dataset, s.model, p.population, p.central, p.local, output_dir)
    wall = time.perf_counter() - started
    _track(history)
    guarantees, events = planning.outcome(s.fl, p.population, p.central, p.local, history, p.example_delta)
    info = dict(p.dataset_info, name=reserved.source_name, source=reserved.source)
    metrics = report.final_metrics(s.model, p.population, output_dir, history, wall)
    summary = report.partition_summary(p.population)
    written = report.run_files_of(
        s,
        reserved,
        p.access,
        ledger_info,
        info,
        guarantees,
        metrics,
        p.population,
        history,
        p.central,
        p.local,
        summary,
    )
    files = run_files.write(output_dir, written)
    files += [
        sealed.seal_in_place(output_dir / "final_model.pt"),  # the ServerApp wrote it in the clear
        *report.write_federated_files(output_dir, s, p.population, guarantees, history, summary),
    ]
    result = RunResult("federated", output_dir, metrics, guarantees, info, ledger_info)
    return Outcome(result, events, files, epsilon={g.unit: g.epsilon for g in guarantees})


def _track(history: dict) -> None:
    """Each round's held-out accuracy and ε so far, to the experiment tracker (if any), once the rounds are done:
    the server's loop may run in another thread or process than the tracker."""
    from privtrain import tracking

    for record in history.get("rounds", []):
        tracking.report(
            int(record["round"]),
            **{
                k: record[k]
                for k in ("accuracy", "epsilon_client", "epsilon_example")
                if isinstance(record.get(k), (int, float))
            },
        )


def _engine(settings):
    if settings.engine == "deployment":
        from privtrain.federated import deployment

        return deployment
    from privtrain.federated import simulation

    return simulation
