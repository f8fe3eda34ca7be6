"""From settings to privacy: refuse unsound combinations, plan the mechanisms, and state the outcome.

Everything before the ledger reservation reads only public facts: the settings, the number of
clients and the dataset's public size (``dataset.public_n``), which fixes local DP-SGD's sampling
rate and steps per client (the realised partition sizes shape no DP mechanism).

Every federated run charges its source's **example-level** budget, whatever its privacy:

- local DP-SGD (``privacy=dp``): the largest client's DP-SGD events (partitions are disjoint, so an
  example's loss is its own client's), from the server's own count of TRAIN messages;
- central DP-FedAvg (``privacy=central``): one example changes only its own client's clipped update,
  by at most 2C, and that client's participation is the same Bernoulli(q) in both neighbouring
  datasets. By the advanced joint convexity of the hockey-stick divergence (Balle, Barthe & Gaboardi
  2018, Thm 2) each round is then dominated by the remove direction of the Poisson-subsampled
  Gaussian with multiplier sigma/2 (Zhu, Dong & Wang 2022), i.e. what dp-accounting's PLD reports for
  ``PoissonSampledDpEvent(q, GaussianDpEvent(sigma/2))``; the pair is symmetric, so both directions
  are covered, and rounds compose. A fixed cohort gives ``GaussianDpEvent(sigma/2)`` per round. See
  :mod:`privtrain.federated.central` and docs/federated.md;
- both (``central_local``): the tighter of the two bounds above (both hold; the planned ε decides);
- non-private, ``reproducible_noise=true`` (noise anyone can replay) or a schema inferred from the
  rows: ε = ∞ at both units, under the same ``allow_non_private`` rule as every recipe.

Client-level budgets belong to the federated population (the source and its partitioning).
"""

from __future__ import annotations

import math

from privtrain.errors import UserError
from privtrain.federated import accounting
from privtrain.federated import central as central_dp
from privtrain.federated.settings import FlSettings
from privtrain.federated.task import Population
from privtrain.ledger import Mechanism
from privtrain.ledger import Population as LedgerPopulation
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.events import epsilon_pld, non_private_event
from privtrain.privacy.randomness import VOID_NOTE
from privtrain.privacy.spec import PrivacySpec
from privtrain.result import Guarantee


def check_combination(s: FlSettings) -> None:
    """Refuse settings whose guarantee or algorithm would silently not hold."""
    if s.central and s.strategy == "fedadam":
        raise UserError(
            "fl.strategy=fedadam cannot be used with central DP (privacy=central/central_local): its "
            "adaptive server step would need the noise added after it to bound a different sensitivity; "
            "use fl.strategy=fedavg or fedprox, or privacy=dp."
        )
    if s.local and s.strategy == "fedprox" and s.proximal_mu > 0:
        raise UserError(
            "fl.strategy=fedprox cannot be combined with local DP (privacy=dp/central_local): Opacus' "
            "per-example gradients would drop the proximal term; use fl.strategy=fedavg or fedadam."
        )
    if s.local and s.grad_sample_mode not in dp_plan.GRAD_SAMPLE_MODES:
        raise UserError(
            f"fl.grad_sample_mode={s.grad_sample_mode!r} is unknown; choose one of "
            f"{', '.join(dp_plan.GRAD_SAMPLE_MODES)}."
        )


def local_spec(privacy: PrivacySpec) -> tuple[PrivacySpec, str]:
    """The local DP-SGD block and its config path: ``privacy`` itself for privacy=dp, else ``privacy.local``.

    Raises:
        UserError: ``privacy.local`` is not set.
    """
    if privacy.name == "dp":
        return privacy, "privacy"
    if privacy.local is None:
        raise UserError(f"privacy={privacy.name} needs privacy.local, the example-level DP-SGD block.")
    return privacy.local, "privacy.local"


def plan(privacy, model_spec, s: FlSettings, population: Population):
    """(central plan or None, local plan or None). Local DP-SGD's sampling rate and steps follow from
    the dataset's public size (``s.public_n``), never from the rows each client holds.

    Raises:
        UserError: a setting out of range, a model that cannot be built, or local DP without a public size.
    """
    k = population.num_clients
    if k < 2 and s.central:
        raise UserError(f"fl.num_clients={k}: client-level DP needs at least 2 clients.")
    q = s.sample_rate(k)
    central = local = None
    if s.central:
        central = central_dp.plan_central(
            target_epsilon=privacy.target_epsilon,
            noise_multiplier=privacy.noise_multiplier,
            delta=privacy.delta,
            clipping_norm=privacy.clipping_norm,
            clipping_side=privacy.clipping_side,
            rounds=s.rounds,
            sampling=s.client_sampling,
            sample_rate=q,
            denominator=s.expected_cohort(k),
            num_clients=k,
        )
    if s.local:
        lp, field = local_spec(privacy)
        local = accounting.plan_local(
            sizes=client_rows(s, population),
            batch_size=s.batch_size,
            local_epochs=s.local_epochs,
            rounds=s.rounds,
            target_epsilon=lp.target_epsilon,
            noise_multiplier=lp.noise_multiplier,
            delta=lp.delta,
            max_grad_norm=lp.max_grad_norm,
            accountant=str(lp.accountant),
            field=field,
        )
    from privtrain import models
    from privtrain.federated.task import build_model, shape_of

    built = build_model(model_spec, shape_of(population))  # a model that cannot be built fails before any charge
    if s.local:
        models.validate_for_dp(built)
    return central, local


def client_rows(s: FlSettings, population: Population) -> list[int]:
    """Each client's training rows as local DP-SGD plans them: the public size's expected share per client.

    Every row lands in the pool, a client's training side and a client independently of the other
    rows (:mod:`privtrain.data.assign`), so ``public_n (1 - test_size) (1 - client_test_size) / clients``
    is public. (With ``fl.partition=column`` the number of clients is the number of distinct ids,
    treated as public.) A run whose guarantee is void anyway plans with the rows the clients hold.

    Raises:
        UserError: no public size, and a guarantee to keep.
    """
    if s.public_n is None:
        if void_reasons(s, population):
            return population.train_sizes()
        raise UserError(NO_PUBLIC_SIZE)
    k = population.num_clients
    return [dp_plan.public_rows(s.public_n, 1 - s.test_size, 1 - s.client_test_size, 1 / k)] * k


NO_PUBLIC_SIZE = (
    "dataset.public_n is not set: local DP-SGD fixes each client's sampling rate and steps from a public "
    "row count, never from the rows the client holds; declare the table's approximate size, known without "
    "reading it, e.g. dataset.public_n=3000 (docs/privacy.md)."
)


def void_reasons(s: FlSettings, population: Population) -> tuple[str, ...]:
    """Why a run that trains with DP still guarantees nothing: each makes both ε infinite (charged as such)."""
    out = []
    if s.reproducible_noise:
        out.append(VOID_NOTE)
    if population.dataset.schema.inferred:
        out.append(
            "dataset.infer_schema=true: the preprocessing bounds and categories were read off the private rows "
            "without noise, so the guarantee is void (epsilon = infinity); declare dataset.schema instead"
        )
    return tuple(out)


def example_delta(privacy, population: Population) -> float:
    """δ of the example-level guarantee: the local DP-SGD block's; for central DP a default below 1/n
    (``privacy.delta`` is its client-level δ); for a non-private run, ``privacy.delta`` if set."""
    n = int(sum(population.train_sizes()))
    if privacy.name in ("dp", "central_local"):
        return dp_plan.resolve_delta(local_spec(privacy)[0].delta, n)
    return dp_plan.resolve_delta(privacy.delta if privacy.name == "none" else None, n)


def central_example_events(central, releases: int) -> tuple:
    """What central DP-FedAvg's releases bound toward one example (sensitivity 2C: multiplier σ/2;
    the same Poisson participation, see the module docstring)."""
    return central.example_events(releases)


def mechanisms(privacy, s: FlSettings, population: Population, central, local) -> tuple[Mechanism, ...]:
    """What the run asks the ledger for: the example level always, the client level under central DP
    (and, at ε = ∞, for a non-private or reproducible-noise run)."""
    delta = local.delta if local is not None else example_delta(privacy, population)
    scope = LedgerPopulation(population.key, population.label)
    if (central is None and local is None) or void_reasons(s, population):
        client_delta = (
            central.delta
            if central is not None
            else central_dp.client_delta(privacy.delta if privacy.name != "dp" else None, population.num_clients)
        )
        return (
            Mechanism("client", (non_private_event(),), client_delta, math.inf, scope),
            Mechanism("example", (non_private_event(),), delta, math.inf),
        )
    out = []
    if central is not None:
        out.append(Mechanism("client", central.events, central.delta, central.epsilon, scope))
    events, eps, _ = example_bound(
        central, local, central.rounds if central else 0, delta, local.planned_steps if local else {}
    )
    out.append(Mechanism("example", events, delta, eps))
    return tuple(out)


def example_bound(central, local, releases: int, delta: float, steps: dict[int, int], unknown: int = 0):
    """(events, ε, "local" | "central") of the example-level bound: local DP-SGD's (its accountant's ε),
    central's (PLD), or the tighter of the two; (None, inf, "none") when nothing is private."""
    options = []
    if local is not None:
        worst, worst_steps, eps = local.worst_case(steps, unknown)
        options.append(((local.client_event(worst, worst_steps),) if worst >= 0 else (), eps, "local"))
    if central is not None:
        ev = central_example_events(central, releases)
        options.append((ev, epsilon_pld(list(ev), delta), "central"))
    if not options:
        return None, math.inf, "none"
    return min(options, key=lambda o: o[1])


def outcome(s: FlSettings, population: Population, central, local, history: dict, example_delta_: float):
    """(guarantees, {unit: events actually applied}) from what the server counted."""
    notes = list(population.dataset.schema.notes)
    notes.append(
        f"charged to source {population.dataset.name}; client-level budgets belong to its population "
        f"{population.label} [{population.key[:8]}]"
    )
    notes.append(
        "client partition sizes are treated as public (they are data dependent: each row's client is a "
        "keyed function of that row)"
    )
    releases = int(history.get("releases", 0))
    steps = {int(k): int(v) for k, v in history.get("client_steps", {}).items()}
    unknown = int(history.get("unknown_node_messages", 0))
    why = list(void_reasons(s, population)) if central is not None or local is not None else []
    if (central is None and local is None) or why:
        client_delta = central.delta if central is not None else central_dp.client_delta(None, population.num_clients)
        guarantees = [
            Guarantee(math.inf, d, unit, "none", (non_private_event(),), tuple(notes + why))
            for unit, d in (("client", client_delta), ("example", example_delta_))
        ]
        return guarantees, {g.unit: (non_private_event(),) for g in guarantees}
    guarantees, events = [], {}
    if central is not None:
        ev = central.client_events(releases)
        guarantees.append(
            Guarantee(
                epsilon_pld(list(ev), central.delta),
                central.delta,
                "client",
                "pld",
                ev,
                tuple(notes + _central_notes(central, releases)),
            )
        )
        events["client"] = ev
    ev, eps, kind = example_bound(central, local, releases, example_delta_, steps, unknown)
    if kind == "local":
        worst, worst_steps, _ = local.worst_case(steps, unknown)
        how = [
            f"local DP-SGD in every client (noise multiplier {local.noise_multiplier:.4g}, clipping "
            f"{local.max_grad_norm:g}); each client's accountant persists across rounds in its Context.state",
            f"the server counts the TRAIN messages it sent to each client (never what clients report); partitions "
            f"are disjoint, so the population's epsilon is the largest client's (client {worst}, {worst_steps} "
            f"steps at sampling rate {local.sample_rate(worst):.4g})"
            if worst >= 0
            else "no client trained",
            f"each client's sampling rate (batch {local.batch_size} / {local.sizes[0]} public rows per client), "
            "steps and aggregation weight are fixed from public values, not from the rows it holds; a client "
            "without rows still takes its steps (zero sums, full noise): add/remove-one-example adjacency",
        ]
        if unknown:
            how.append(
                f"{unknown} TRAIN message(s) went to nodes whose partition is unknown; charged as the worst "
                "case over partitions"
            )
        accountant = local.accountant
    else:
        how = [
            "from central DP: one example changes only its client's clipped update, by at most twice the clipping "
            f"norm, and not that client's participation, so each of the {releases} releases is dominated by a "
            + ("Poisson-subsampled " if central.sampling == "poisson" and central.sample_rate < 1 else "")
            + f"Gaussian mechanism with multiplier {central.noise_multiplier / 2:.4g} toward one example "
            "(advanced joint convexity, Balle et al. 2018); see docs/federated.md"
        ]
        accountant = "pld"
    guarantees.append(Guarantee(eps, example_delta_, "example", accountant, tuple(ev), tuple(notes + how)))
    events["example"] = tuple(ev)
    return guarantees, events


def _central_notes(central, releases: int) -> list[str]:
    return [
        f"DP-FedAvg: {central.describe()}; each included client's update is clipped to L2 norm "
        f"{central.clipping_norm:g} ({central.clipping_side}-side, re-clipped by the server), the clipped updates are "
        f"summed with equal weights, Gaussian noise of std {central.noise_multiplier:.4g} x clip is added and the sum "
        f"is divided by {central.denominator:.4g}; {releases} releases are composed (PLD)",
        "the client sampling and the server's noise come from secret generators (the OS's entropy), never from seed",
        "federated evaluation metrics are computed on the clients' local splits and are not covered",
    ]
