"""Recipe ``federated``: federated learning on Flower, with client-level and/or example-level DP.

Features and the keys that turn them on:

- engine:                 ``fl.engine=simulation`` (in-process, default) | ``deployment`` (SuperLink + SuperNodes)
- clients, partitioning:  ``fl.num_clients``, ``fl.partition=iid|dirichlet|column``, ``fl.alpha``, ``fl.client_column``
- rounds, sampling:       ``fl.rounds``, ``fl.clients_per_round`` (or ``fl.fraction``)
- strategy:               ``fl.strategy=fedavg|fedprox|fedadam`` (``fl.proximal_mu``, ``fl.server_lr``)
- client training:        ``fl.local_epochs``, ``fl.batch_size``, ``fl.optimizer``, ``fl.lr``
- central DP (client):    ``privacy=central`` (default): ``privacy.target_epsilon``, ``privacy.clipping_norm``,
                          ``privacy.clipping_side=server|client``
- local DP (example):     ``privacy=dp``: DP-SGD in every client, accountant kept across rounds
- both (two units):       ``privacy=central_local`` (``privacy.local.*``)
- non-private baseline:   ``privacy=none`` (needs ``ledger.allow_non_private=true`` on a budgeted dataset)
- dry run:                ``--dry-run`` / ``ledger.plan_only=true``

Order: load + fingerprint the population (content + partitioning) -> plan -> ledger
reservation (one per unit) -> hand the job to the engine, which reads the clients'
rows -> artifacts -> ledger commit.
"""

from __future__ import annotations

import secrets
import time
from contextlib import ExitStack
from pathlib import Path

from privtrain import config, ledger
from privtrain.errors import BudgetExceeded, UserError
from privtrain.result import RunResult


def run(cfg, output_dir: Path) -> RunResult:
    from privtrain.federated import planning, report, settings as fl_settings, task

    output_dir = Path(output_dir).resolve()
    plain = {k: v for k, v in config.to_container(cfg).items() if k != "hydra"}
    s = fl_settings.from_config(plain)
    planning.check_combination(s, plain)
    if s.engine == "deployment":
        from privtrain.federated import deployment

        deployment.preflight(s)  # an unreachable SuperLink fails here, before anything is charged
    population = task.build_population(task.load_dataset(plain, s), s)
    central, local = planning.plan(plain, s, population)
    charges = planning.charges(cfg, plain, s, population, central, local, run_id=f"federated-{secrets.token_hex(6)}")
    book = ledger.open(cfg.ledger.path)
    dataset_info = report.dataset_info(population)
    if cfg.ledger.plan_only:
        text = "\n".join(book.plan(c).render() for c in charges)
        return RunResult("federated", output_dir, {}, [], dataset_info, {"plan": text}, dry_run=True)
    for charge in charges:  # every unit must fit before any is reserved
        plan = book.plan(charge)
        if not plan.fits:
            from privtrain.ledger.charging import budget_exceeded_message

            raise (BudgetExceeded(budget_exceeded_message(plan)) if plan.refusal == "over budget"
                   else UserError(plan.refusal))

    with ExitStack() as stack:
        entries = [stack.enter_context(book.charging(c)) for c in charges]
        # Only now, with the budget reserved, does the engine hand the clients their rows.
        started = time.perf_counter()
        history = _engine(s).run_job(plain, population, central, local, output_dir)
        wall = time.perf_counter() - started
        guarantees, events = planning.outcome(s, population, central, local, history)
        ledger_info = [report.ledger_summary(book, e, c.unit) for e, c in zip(entries, charges)]
        metrics = report.final_metrics(plain, population, output_dir, history, wall)
        files = report.write_artifacts(output_dir, cfg, plain, s, population, dataset_info, guarantees, metrics,
                                       history, central, local, ledger_info)
        from privtrain.artifacts.run_dir import hash_artifacts

        hashes = hash_artifacts(files, output_dir)
        for entry, charge in zip(entries, charges):
            entry.commit(events[charge.unit], artifacts=hashes, epsilon=_eps(guarantees, charge.unit))
    main = dict(ledger_info[0], charges=ledger_info)
    result = RunResult("federated", output_dir, metrics, guarantees, dataset_info, main)
    if cfg.audit.enabled:
        from privtrain.audit import audit_run

        result.metrics["audit"] = audit_run(output_dir)
    return result


def _engine(settings):
    if settings.engine == "deployment":
        from privtrain.federated import deployment

        return deployment
    from privtrain.federated import simulation

    return simulation


def _eps(guarantees, unit: str) -> float:
    return next(g.epsilon for g in guarantees if g.unit == unit)

