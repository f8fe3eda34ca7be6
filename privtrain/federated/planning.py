"""From settings to privacy: refuse unsound combinations, plan the mechanisms, and state the outcome.

Everything before :func:`charges` runs before the ledger reservation and reads
only public facts: the config, the number of clients, and the partition sizes
(treated as public, like a dataset's row count).
"""

from __future__ import annotations

import math

from privtrain import config, ledger
from privtrain.errors import UserError
from privtrain.federated import accounting
from privtrain.federated.settings import FlSettings
from privtrain.federated.task import Population
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.events import epsilon_pld, non_private_event
from privtrain.result import Guarantee


def check_combination(s: FlSettings, cfg: dict) -> None:
    """Refuse settings whose guarantee or algorithm would silently not hold."""
    if s.central and s.strategy == "fedadam":
        raise UserError("fl.strategy=fedadam cannot be used with central DP (privacy=central/central_local): Flower's "
                        "DP wrapper adds noise after FedAdam's adaptive server step, so the Gaussian mechanism's "
                        "sensitivity does not hold; use fl.strategy=fedavg or fedprox, or privacy=dp.")
    if s.local and s.strategy == "fedprox" and s.proximal_mu > 0:
        raise UserError("fl.strategy=fedprox cannot be combined with local DP (privacy=dp/central_local): Opacus' "
                        "per-example gradients would drop the proximal term; use fl.strategy=fedavg or fedadam.")
    if s.local and s.grad_sample_mode not in dp_plan.GRAD_SAMPLE_MODES:
        raise UserError(f"fl.grad_sample_mode={s.grad_sample_mode!r} is unknown; choose one of "
                        f"{', '.join(dp_plan.GRAD_SAMPLE_MODES)}.")


def local_settings(cfg: dict) -> tuple[dict, str]:
    """The local DP-SGD block and its config path: ``privacy`` itself for privacy=dp, else ``privacy.local``."""
    p = cfg["privacy"]
    return (p, "privacy") if p["name"] == "dp" else (p["local"], "privacy.local")


def plan(cfg: dict, s: FlSettings, population: Population):
    """(central plan or None, local plan or None)."""
    k = population.num_clients
    m = s.sample_size(k)
    if k < 2 and s.central:
        raise UserError(f"fl.num_clients={k}: client-level DP needs at least 2 clients.")
    central = local = None
    p = cfg["privacy"]
    if s.central:
        central = accounting.plan_central(
            target_epsilon=p["target_epsilon"], noise_multiplier=p["noise_multiplier"], delta=p["delta"],
            clipping_norm=p["clipping_norm"], clipping_side=p["clipping_side"], rounds=s.rounds,
            clients_per_round=m, num_clients=k)
    if s.local:
        lp, field = local_settings(cfg)
        local = accounting.plan_local(
            sizes=population.train_sizes(), batch_size=s.batch_size, local_epochs=s.local_epochs, rounds=s.rounds,
            target_epsilon=lp["target_epsilon"], noise_multiplier=lp["noise_multiplier"], delta=lp["delta"],
            max_grad_norm=lp["max_grad_norm"], accountant=str(lp["accountant"]), field=field)
    if not s.local:  # the model must still be buildable; Opacus validity only matters under local DP
        return central, local
    from privtrain import models
    from privtrain.federated.task import build_model, shape_of

    models.validate_for_dp(build_model(cfg, shape_of(population)))
    return central, local


def charges(cfg, plain: dict, s: FlSettings, population: Population, central, local, *, run_id: str) -> list:
    """One ledger charge per unit this run spends privacy at."""
    common = dict(run_id=run_id, recipe="federated", dataset_fingerprint=population.fingerprint,
                  dataset_name=f"{population.dataset.name} (federated)", config_hash=config.config_hash(cfg),
                  allow_non_private=bool(plain["ledger"]["allow_non_private"]),
                  default_budget=config.default_budget(plain["ledger"]["default_budget"]))
    out = []
    if central is not None:
        out.append(ledger.Charge(unit="client", events=central.events, delta=central.delta,
                                 epsilon=central.epsilon, **common))
    if local is not None:
        out.append(ledger.Charge(unit="example", events=local.events, delta=local.delta,
                                 epsilon=local.epsilon, **common))
    if not out:  # non-private: epsilon = inf at both units
        delta = dp_plan.resolve_delta(plain["privacy"]["delta"], int(sum(population.train_sizes())))
        for unit in ("client", "example"):
            out.append(ledger.Charge(unit=unit, events=(non_private_event(),), delta=delta, epsilon=math.inf,
                                     **common))
    return out


def outcome(s: FlSettings, population: Population, central, local, history: dict):
    """(guarantees, {unit: events actually applied}) from what the run reports."""
    notes = list(population.dataset.schema.notes)
    notes.append("the population is identified in the ledger by its content and its partitioning "
                 f"({population.spec.kind}, {population.num_clients} clients, partition seed {population.spec.seed})")
    guarantees, events = [], {}
    if central is not None:
        releases = int(history.get("releases", 0))
        ev = (accounting.central_event(central.noise_multiplier, releases),)
        eps = epsilon_pld(list(ev), central.delta)
        guarantees.append(Guarantee(eps, central.delta, "client", "pld", ev, tuple(notes + [
            f"DP-FedAvg: each round {central.clients_per_round} of {central.num_clients} clients are sampled "
            f"without replacement; their updates are clipped to L2 norm {central.clipping_norm:g} "
            f"({central.clipping_side}-side), averaged with equal weights, and Gaussian noise of std "
            f"{central.noise_multiplier:.4g} x clip / {central.clients_per_round} is added",
            "no amplification by client sampling is claimed (q = 1): Flower does not sample clients the Poisson "
            f"way the accountant would need; {releases} noisy releases are composed",
            "federated evaluation metrics are computed on the clients' local splits and are not covered",
        ])))
        events["client"] = ev
    if local is not None:
        steps = {int(k): int(v) for k, v in history.get("client_steps", {}).items()}
        worst, eps = local.worst(steps)
        ev = (local.client_event(worst, steps[worst]),) if worst >= 0 else ()
        guarantees.append(Guarantee(eps, local.delta, "example", local.accountant, ev, tuple(notes + [
            f"local DP-SGD in every client (noise multiplier {local.noise_multiplier:.4g}, clipping "
            f"{local.max_grad_norm:g}); each client's accountant persists across rounds in its Context.state",
            f"partitions are disjoint, so the population's epsilon is the largest client's (client {worst}, "
            f"{steps.get(worst, 0)} steps at sampling rate {local.sample_rate(worst):.4g})" if worst >= 0 else
            "no client trained",
            "client partition sizes are treated as public: they set each client's sampling rate",
        ])))
        events["example"] = ev
    if central is None and local is None:
        delta = dp_plan.default_delta(int(sum(population.train_sizes())))
        for unit in ("client", "example"):
            guarantees.append(Guarantee(math.inf, delta, unit, "none", (non_private_event(),), tuple(notes)))
            events[unit] = (non_private_event(),)
    return guarantees, events
