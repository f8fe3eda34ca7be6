"""One-run audit of central DP-FedAvg: canary clients whose updates are Dirac vectors.

The planned federated run (the recipe's ``plan``: population sizes, σ, C, q or the cohort, rounds,
the fixed denominator) is replayed at the server, round by round, through the server's own parts:
the client sampler a run builds (:func:`privtrain.federated.sampling.for_job`, drawing from a secret
generator) and the DP-FedAvg release (:func:`privtrain.federated.aggregation.dp_fedavg`: clip each
update to C, add N(0, σ²C²), divide by the fixed denominator), with the run's secret noise generator.

The population is the planned N clients plus the included canary clients (each of m with probability
½). Canary j's update is 2C·e_j in a block of m canary coordinates that no real client touches (a real
client's update there is zero), so clipping must halve it. After each round the released canary block,
times the denominator over C, is b + N(0, σ²) with b ~ Bernoulli(q) for an included canary; the scores,
bounds and verdict are the white-box DP-SGD audit's (:mod:`privtrain.audit.one_run_stats`), at the
client level.

What this does not exercise: Flower's messaging and the clients' own training (the update a client
sends is the canary's), and the fixed cohort's replace-one accounting (a canary added or removed moves
the sum by C, while that accounting charges 2C, so its bound is correspondingly looser).
"""

from __future__ import annotations

import secrets

import numpy as np

from privtrain.audit import one_run_stats as stats
from privtrain.errors import UserError

ATTACKS = ("gauss", "steinke")


def job_from_planned(planned) -> dict:
    """What the audit needs from a planned federated run (``privtrain.recipes.federated.plan``).

    Raises:
        UserError: the run has no central (client-level) DP to audit.
    """
    if planned.central is None:
        raise UserError(
            "privtrain audit --one-run federated audits central DP-FedAvg (privacy=central or "
            "central_local); for local DP-SGD in the clients, audit dp_sgd with the clients' settings."
        )
    s, c = planned.settings, planned.central
    return {
        "settings": s,
        "central": c,
        "clients": int(c.num_clients),
        "describe": {
            "summary": (
                f"federated central DP-FedAvg on {planned.population.dataset.name}: {c.num_clients} clients, "
                f"{c.rounds} rounds, {c.sampling} sampling, denominator {c.denominator:.4g}"
            ),
            "config_hash": s.config_hash,
            "rows_from": "canary clients only (no client data)",
        },
    }


def audit_job(job: dict, settings, *, progress: bool = True) -> tuple[dict, dict]:
    """Replay the planned rounds with canary clients; return (report content, scores by attack)."""
    from tqdm.auto import tqdm

    from privtrain.audit.one_run import report_content

    c, fl = job["central"], job["settings"].fl
    if settings.mode != "whitebox":
        raise UserError(
            f"audit.one_run.mode={settings.mode}: the federated one-run audit observes every release "
            "(white-box) only; use --mode whitebox."
        )
    rng = np.random.default_rng(secrets.randbits(128))  # the audit's own coins: which canaries are in
    m = int(settings.canaries)
    included = rng.random(m) < 0.5
    with tqdm(total=c.rounds, desc="one-run audit", unit="round", disable=not progress, leave=False) as bar:
        observed = observe_rounds(job, included, on_round=bar.update)
    scores = stats.llr_scores(observed.T, c.sample_rate, c.noise_multiplier)
    split = (scores[included], scores[~included])
    conf = float(settings.confidence)
    attacks = {
        "gauss": stats.gauss_mu(*split, delta=c.delta, confidence=conf, n_tests=len(ATTACKS)).to_dict(),
        "steinke": stats.steinke_bound(*split, delta=c.delta, confidence=conf, n_tests=len(ATTACKS)).to_dict(),
    }
    mu = stats.clt_mu(c.sample_rate, c.noise_multiplier, c.rounds)
    claimed = {
        "epsilon": float(c.epsilon),
        "delta": c.delta,
        "unit": "client",
        "accountant": "pld",
        "noise_multiplier": c.noise_multiplier,
        "sample_rate": c.sample_rate,
        "steps": c.rounds,
        "max_grad_norm": c.clipping_norm,
        "void": ["reproducible noise"] if fl.reproducible_noise else [],
    }
    expected = {
        "clt_mu": mu,
        "clt_epsilon": stats.gdp_epsilon(mu, c.delta),
        "claimed_gdp_mu": stats.gdp_mu(c.epsilon, c.delta),
    }
    report = report_content(
        recipe="federated",
        configuration=job["describe"],
        claimed=claimed,
        settings=settings,
        canaries=m,
        rows=job["clients"],
        attacks=attacks,
        structure=None,
        built=None,
        expected=expected,
        included={"whitebox_in": int(included.sum())},
        seconds={},
        n_tests=len(ATTACKS),
        mutant=None,
    )
    return report, {"gauss": split}


def observe_rounds(job: dict, included: np.ndarray, *, on_round=None) -> np.ndarray:
    """(rounds, m): each round's released canary block, times the denominator over C."""
    from privtrain.federated import aggregation, sampling
    from privtrain.privacy.randomness import numpy_generator

    c, fl = job["central"], job["settings"].fl
    n, m = job["clients"], len(included)
    sampler = sampling.for_job(fl, n)  # the run's own sampler: its rate (or cohort) from the planned population
    noise = numpy_generator(fl.noise_seed, "server-noise")  # as the server's (privtrain.federated.rounds)
    canaries = {n + j: j for j in np.flatnonzero(included)}  # node id -> canary coordinate
    nodes = list(range(n)) + list(canaries)
    zero = {"canary": np.zeros(m)}
    rows = []
    for _ in range(c.rounds):
        updates = []
        for node in sampler.sample(nodes):
            if node in canaries:
                update = np.zeros(m)
                update[canaries[node]] = 2 * c.clipping_norm  # a Dirac update of norm 2C: clipping must halve it
                updates.append({"canary": update})
            else:
                updates.append(dict(zero))
        released = aggregation.dp_fedavg(
            zero,
            updates,
            clipping_norm=c.clipping_norm,
            noise_multiplier=c.noise_multiplier,
            denominator=c.denominator,
            rng=noise,
        )
        rows.append(released["canary"] * c.denominator / c.clipping_norm)
        if on_round is not None:
            on_round()
    return np.stack(rows)
