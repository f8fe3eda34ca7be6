"""White-box one-run audit: Dirac canaries observed in every noisy update, a replay, a structural probe.

1. **Dirac run** (:func:`dirac_run`): the planned configuration trains on ``rows`` rows, of which the
   included canaries (each with probability 1/2) are ``m_in`` and public rows the rest, so the loader
   sees exactly as many rows as the plan assumed. :class:`~privtrain.audit.canaries.DiracObserver`
   records every update's canary block; each canary's score is the likelihood ratio of its T
   observations under the *claimed* q and σ (:func:`~privtrain.audit.one_run_stats.llr_scores`).
2. **Replay** (:func:`replay_scores`): the attacker knows the config, ``seed`` included. It reruns the
   first K steps with the same seed and config but no canary, and subtracts its canary block from
   the run's. Noise drawn from a secret generator does not repeat, so the difference carries twice
   the noise and shows less than the run itself; noise seeded from ``seed`` repeats exactly, the
   difference is the canaries' signal alone, and the bound explodes.
3. **Structure** (:func:`structure`): the parts are built for ``rows - 1``, ``rows`` and ``rows + 1``
   rows (same plan) and what Opacus was given (sampling rate, divisor, steps, noise, clipping) is
   compared, between them and with the plan. A divisor that depends on the row count scales signal
   and noise alike, so no canary can see it: only this check can.
"""

from __future__ import annotations

import json
import math

import numpy as np

from privtrain.audit import one_run_data as data
from privtrain.audit.canaries import (
    CANARY_LABEL,
    NORM_OVER_CLIP,
    CanaryModel,
    DiracObserver,
    MechanismProbe,
    Probed,
    StopTraining,
    canary_tensors,
    with_ids,
)
from privtrain.audit.one_run_stats import llr_scores


def _canary_model(job, m: int) -> CanaryModel:
    base = data.build_model(job)
    return CanaryModel(
        base,
        m,
        job.n_classes,
        tensors=canary_tensors(job.train.clipping, base),
        norm=NORM_OVER_CLIP * job.dp.max_grad_norm,
    )


def dirac_rows(job, included: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, ids): ``rows`` rows, the included canaries among them (id j + 1) and public rows (id 0)."""
    chosen = np.flatnonzero(included)
    if len(chosen) > job.rows:  # only when m > rows, which the caller prevents
        raise ValueError(f"Expected at most {job.rows} included canaries, got {len(chosen)}.")
    x_pub, y_pub = data.public_rows(job, job.rows - len(chosen), rng)
    x = np.concatenate([x_pub, np.zeros((len(chosen), job.n_inputs), np.float32)])
    y = np.concatenate([y_pub, np.full(len(chosen), CANARY_LABEL, np.int64)])
    ids = np.concatenate([np.zeros(len(y_pub)), chosen + 1.0])
    return x, y, ids


def dirac_run(job, included: np.ndarray, rng, *, on_step=None) -> tuple[np.ndarray, dict, tuple]:
    """Train with the canaries; return (observations (T, m), what the parts said, the rows for the replay)."""
    x, y, ids = dirac_rows(job, included, rng)
    observer = DiracObserver(_canary_model(job, len(included)), on_step=on_step)
    data.train(job, observer.model, with_ids(x, ids), y, observer)
    return observer.observations, observer.built, (x, y)


def sigma_eff(job, built: dict) -> float:
    """The claimed noise std in canary units: the plan's σ times the canary geometry (1 for flat clipping)."""
    return job.dp.noise_multiplier * built["geometry"]


def dirac_scores(job, observations: np.ndarray, built: dict) -> np.ndarray:
    """Each canary's log-likelihood ratio (in vs out) over all its steps, at the claimed q and σ."""
    return llr_scores(observations.T, job.dp.sample_rate, sigma_eff(job, built))


def replay_scores(
    job, observations: np.ndarray, built: dict, rows: tuple, m: int, steps: int, *, on_step=None
) -> np.ndarray:
    """Scores of the replay attack: the run's first ``steps`` canary blocks minus a same-seed rerun's."""
    x, y = rows
    observer = DiracObserver(_canary_model(job, m), stop_after=steps, on_step=on_step)
    try:  # the same rows, but no row is a canary any more: the attacker's world without canaries
        data.train(job, observer.model, with_ids(x, np.zeros(len(y))), y, observer)
    except StopTraining:
        pass
    k = min(steps, len(observer.rows), len(observations))
    difference = observations[:k] - observer.observations[:k]
    return llr_scores(difference.T, job.dp.sample_rate, sigma_eff(job, built) * math.sqrt(2))


def replay_steps(job, requested: int | None) -> int:
    """K: ``requested``, or enough steps that a canary is sampled in one with probability 1 - e^-5."""
    if requested is not None:
        return max(1, min(int(requested), job.dp.steps))
    return max(1, min(job.dp.steps, math.ceil(5 / job.dp.sample_rate)))


FIELDS = ("sample_rate", "divisor", "steps", "noise_multiplier", "max_grad_norm", "per_tensor_norms", "optimizer")


def structure(job, rng) -> dict:
    """Build the parts for rows - 1, rows and rows + 1 and compare what Opacus was given."""
    probes = []
    for n in (job.rows - 1, job.rows, job.rows + 1):
        x, y = data.public_rows(job, n, rng)
        probe = MechanismProbe()
        try:
            data.train(job, data.build_model(job), x, y, probe)
        except Probed:
            pass
        probes.append(probe.facts)
    varies = [f for f in FIELDS if len({json.dumps(p[f]) for p in probes}) > 1]
    plan = {
        "sample_rate": job.dp.sample_rate,
        "steps": job.dp.steps,
        "noise_multiplier": job.dp.noise_multiplier,
        "max_grad_norm": job.dp.max_grad_norm,
    }
    differs = [f for f, v in plan.items() if not math.isclose(probes[1][f], v, rel_tol=1e-6)]
    return {
        "probes": probes,
        "plan": plan,
        "varies_with_rows": varies,
        "differs_from_plan": differs,
        "flag": bool(varies or differs),
    }
