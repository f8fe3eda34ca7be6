"""From settings to privacy: refuse unsound combinations, plan the mechanisms, and state the outcome.

Everything before the ledger reservation reads only public facts: the settings, the number of
clients, and the partition sizes (treated as public, like a dataset's row count).

Every federated run charges its source's **example-level** budget, whatever its privacy:

- local DP-SGD (``privacy=dp``): the largest client's DP-SGD events (partitions are disjoint, so an
  example's loss is its own client's);
- central DP-FedAvg (``privacy=central``): a change of one example changes only its client's update,
  and both versions of that update are clipped to norm C, so the noisy sum moves by at most 2C.
  Each release is therefore a Gaussian mechanism with multiplier σ/2 toward one example (σ is the
  client-level multiplier, calibrated for sensitivity C), with no amplification claimed; composed
  over the releases. See docs/federated.md ("Units and adjacency");
- both (``central_local``): the tighter of the two bounds above (both hold; the planned ε decides);
- non-private: ε = ∞, under the same ``allow_non_private`` rule as every recipe.

Client-level budgets belong to the federated population (the source and its partitioning).
"""

from __future__ import annotations

import math

from privtrain.errors import UserError
from privtrain.federated import accounting
from privtrain.federated.settings import FlSettings
from privtrain.federated.task import Population
from privtrain.ledger import Mechanism
from privtrain.ledger import Population as LedgerPopulation
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.events import epsilon_pld, non_private_event
from privtrain.result import Guarantee


def check_combination(s: FlSettings) -> None:
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


def local_spec(privacy) -> tuple[object, str]:
    """The local DP-SGD block and its config path: ``privacy`` itself for privacy=dp, else ``privacy.local``."""
    return (privacy, "privacy") if privacy.name == "dp" else (privacy.local, "privacy.local")


def plan(privacy, model_spec, s: FlSettings, population: Population):
    """(central plan or None, local plan or None)."""
    k = population.num_clients
    m = s.sample_size(k)
    if k < 2 and s.central:
        raise UserError(f"fl.num_clients={k}: client-level DP needs at least 2 clients.")
    central = local = None
    if s.central:
        central = accounting.plan_central(
            target_epsilon=privacy.target_epsilon, noise_multiplier=privacy.noise_multiplier, delta=privacy.delta,
            clipping_norm=privacy.clipping_norm, clipping_side=privacy.clipping_side, rounds=s.rounds,
            clients_per_round=m, num_clients=k)
    if s.local:
        lp, field = local_spec(privacy)
        local = accounting.plan_local(
            sizes=population.train_sizes(), batch_size=s.batch_size, local_epochs=s.local_epochs, rounds=s.rounds,
            target_epsilon=lp.target_epsilon, noise_multiplier=lp.noise_multiplier, delta=lp.delta,
            max_grad_norm=lp.max_grad_norm, accountant=str(lp.accountant), field=field)
    from privtrain import models
    from privtrain.federated.task import build_model, shape_of

    built = build_model(model_spec, shape_of(population))  # a model that cannot be built fails before any charge
    if s.local:
        models.validate_for_dp(built)
    return central, local


def example_delta(privacy, population: Population) -> float:
    """δ of the example-level guarantee: the local DP-SGD block's; for central DP a default below 1/n
    (``privacy.delta`` is its client-level δ); for a non-private run, ``privacy.delta`` if set."""
    n = int(sum(population.train_sizes()))
    if privacy.name in ("dp", "central_local"):
        return dp_plan.resolve_delta(local_spec(privacy)[0].delta, n)
    return dp_plan.resolve_delta(privacy.delta if privacy.name == "none" else None, n)


def central_example_events(central, releases: int) -> tuple:
    """What central DP-FedAvg's releases bound toward one example: sensitivity 2C, so multiplier σ/2."""
    return (accounting.central_event(central.noise_multiplier / 2.0, releases),)


def mechanisms(privacy, s: FlSettings, population: Population, central, local) -> tuple[Mechanism, ...]:
    """What the run asks the ledger for: the example level always, the client level under central DP."""
    delta = local.delta if local is not None else example_delta(privacy, population)
    scope = LedgerPopulation(population.key, population.label)
    out = []
    if central is not None:
        out.append(Mechanism("client", central.events, central.delta, central.epsilon, scope))
    events, eps, _ = example_bound(central, local, central.rounds if central else 0, delta,
                                   local.planned_steps if local else {})
    if events is None:  # non-private
        out.append(Mechanism("example", (non_private_event(),), delta, math.inf))
        out.insert(0, Mechanism("client", (non_private_event(),), accounting.client_delta(privacy.delta,
                                population.num_clients), math.inf, scope))
    else:
        out.append(Mechanism("example", events, delta, eps))
    return tuple(out)


def example_bound(central, local, releases: int, delta: float, steps: dict[int, int]):
    """(events, ε, "local" | "central") of the example-level bound: local DP-SGD's (its accountant's ε),
    central's σ/2 releases (PLD), or the tighter of the two; (None, inf, "none") when nothing is private."""
    options = []
    if local is not None:
        worst, eps = local.worst(steps)
        options.append(((local.client_event(worst, steps[worst]),) if worst >= 0 else (), eps, "local"))
    if central is not None:
        ev = central_example_events(central, releases)
        options.append((ev, epsilon_pld(list(ev), delta), "central"))
    if not options:
        return None, math.inf, "none"
    return min(options, key=lambda o: o[1])


def outcome(s: FlSettings, population: Population, central, local, history: dict, example_delta_: float):
    """(guarantees, {unit: events actually applied}) from what the server counted."""
    notes = list(population.dataset.schema.notes)
    notes.append(f"charged to source {population.dataset.name}; client-level budgets belong to its population "
                 f"{population.label} [{population.key[:8]}]")
    guarantees, events = [], {}
    releases = int(history.get("releases", 0))
    steps = {int(k): int(v) for k, v in history.get("client_steps", {}).items()}
    if central is not None:
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
    if central is None and local is None:
        for unit, delta in (("client", accounting.client_delta(None, population.num_clients)),
                            ("example", example_delta_)):
            guarantees.append(Guarantee(math.inf, delta, unit, "none", (non_private_event(),), tuple(notes)))
            events[unit] = (non_private_event(),)
        return guarantees, events
    ev, eps, kind = example_bound(central, local, releases, example_delta_, steps)
    if kind == "local":
        worst = local.worst(steps)[0]
        how = [f"local DP-SGD in every client (noise multiplier {local.noise_multiplier:.4g}, clipping "
               f"{local.max_grad_norm:g}); each client's accountant persists across rounds in its Context.state",
               f"partitions are disjoint, so the population's epsilon is the largest client's (client {worst}, "
               f"{steps.get(worst, 0)} steps at sampling rate {local.sample_rate(worst):.4g})" if worst >= 0 else
               "no client trained",
               "client partition sizes are treated as public: they set each client's sampling rate"]
        accountant = local.accountant
    else:
        how = ["from central DP: one example changes only its client's clipped update, by at most twice the "
               f"clipping norm, so each of the {releases} releases is a Gaussian mechanism with multiplier "
               f"{central.noise_multiplier / 2:.4g} toward one example (no amplification claimed)"]
        accountant = "pld"
    guarantees.append(Guarantee(eps, example_delta_, "example", accountant, tuple(ev), tuple(notes + how)))
    events["example"] = tuple(ev)
    return guarantees, events
