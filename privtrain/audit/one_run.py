"""The one-run audit of a planned DP-SGD configuration: ε lower bounds at a stated confidence.

    privtrain audit --one-run dp_sgd privacy.target_epsilon=2        # the CLI
    privtrain.api.audit_one_run("dp_sgd", ["privacy.target_epsilon=2"])  # Python

Order: the job (the configuration as planned, public rows only, nothing charged) -> white-box: the
Dirac run, its scores, the replay, the structural probe -> black-box: the mislabeled-canary run ->
bounds (every attack at level α / attacks) -> the verdict. :mod:`privtrain.audit.one_run_report`
writes it down. Statistics: :mod:`privtrain.audit.one_run_stats`; design choices: docs/audit.md.

Attacks (their ε lower bounds; the audit's bound is the largest):

- ``gauss`` (white-box): the GDP estimate from the Dirac canaries' likelihood-ratio scores;
- ``steinke`` (white-box): the counting bound on the same scores, a proof for any mechanism;
- ``replay`` (white-box): GDP from the ROC of the replay differences (replayable noise);
- ``blackbox_steinke`` and ``blackbox_gauss``: the mislabeled canaries' scores on the final model.

The run is flagged when the bound exceeds the claimed ε, or when the structural probe finds the
mechanism given to Opacus differing with the row count or from the plan.
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import UTC, datetime

import numpy as np

from privtrain.audit import one_run_stats as stats

WHITEBOX_ATTACKS = ("gauss", "steinke", "replay")
BLACKBOX_ATTACKS = ("blackbox_steinke", "blackbox_gauss")


def audit_job(job, settings, *, progress: bool = True) -> tuple[dict, dict]:
    """Run the one-run audit of ``job`` (:class:`~privtrain.audit.one_run_data.AuditJob`).

    Args:
        settings: :class:`~privtrain.audit.settings.OneRunSettings`.
        progress: show a progress bar over every training step the audit takes.

    Returns:
        (the report's content, the scores by attack: ``{name: (in_scores, out_scores)}``).
    """
    from tqdm.auto import tqdm

    from privtrain.audit import blackbox, whitebox
    from privtrain.privacy import mutants

    white, black = settings.mode in ("whitebox", "both"), settings.mode in ("blackbox", "both")
    n_tests = len(WHITEBOX_ATTACKS) * white + len(BLACKBOX_ATTACKS) * black
    rng = np.random.default_rng(secrets.randbits(128))  # the audit's own coins: which canaries are in
    m = min(int(settings.canaries), job.rows)
    k = whitebox.replay_steps(job, settings.replay_steps)
    total = (job.dp.steps + k) * white + job.dp.steps * black
    bar = tqdm(total=total, desc="one-run audit", unit="step", disable=not progress, leave=False)
    conf, delta = float(settings.confidence), job.delta
    attacks, scores, seconds, extra = {}, {}, {}, {}
    in_counts: dict[str, int] = {}  # canaries included, per audit
    try:
        if white:
            included = rng.random(m) < 0.5
            started = time.perf_counter()
            observed, built, rows = whitebox.dirac_run(job, included, rng, on_step=bar.update)
            seconds["dirac_run"] = time.perf_counter() - started
            s = whitebox.dirac_scores(job, observed, built)
            scores["gauss"] = scores["steinke"] = (s[included], s[~included])
            attacks["gauss"] = stats.gauss_mu(*scores["gauss"], delta=delta, confidence=conf, n_tests=n_tests).to_dict()
            attacks["steinke"] = stats.steinke_bound(
                *scores["steinke"], delta=delta, confidence=conf, n_tests=n_tests
            ).to_dict()
            started = time.perf_counter()
            r = whitebox.replay_scores(job, observed, built, rows, m, k, on_step=bar.update)
            seconds["replay"] = time.perf_counter() - started
            scores["replay"] = (r[included], r[~included])
            attacks["replay"] = stats.gdp_roc_bound(
                *scores["replay"], delta=delta, confidence=conf, n_tests=n_tests
            ).to_dict()
            attacks["replay"]["steps"] = k
            started = time.perf_counter()
            extra["structure"] = whitebox.structure(job, rng)
            seconds["structure"] = time.perf_counter() - started
            extra["built"] = built
            extra["expected"] = _expected(job, built)
            in_counts["whitebox_in"] = int(included.sum())
        if black:
            included = rng.random(m) < 0.5
            started = time.perf_counter()
            b = blackbox.run(job, included, rng, on_step=bar.update)
            seconds["blackbox_run"] = time.perf_counter() - started
            scores["blackbox_steinke"] = scores["blackbox_gauss"] = (b[included], b[~included])
            attacks["blackbox_steinke"] = stats.steinke_bound(
                b[included], b[~included], delta=delta, confidence=conf, n_tests=n_tests
            ).to_dict()
            attacks["blackbox_gauss"] = stats.gauss_mu(
                b[included], b[~included], delta=delta, confidence=conf, n_tests=n_tests
            ).to_dict()
            in_counts["blackbox_in"] = int(included.sum())
    finally:
        bar.close()
    return _report(job, settings, m, attacks, extra, in_counts, seconds, n_tests, mutants.active()), scores


def _expected(job, built: dict) -> dict:
    """What correct code should show: the CLT μ of the claimed mechanism in canary units, and its ε."""
    mu = stats.clt_mu(job.dp.sample_rate, job.dp.noise_multiplier * built["geometry"], job.dp.steps)
    claimed_mu = stats.gdp_mu(job.claimed_epsilon, job.delta) if math.isfinite(job.claimed_epsilon) else math.inf
    return {"clt_mu": mu, "clt_epsilon": stats.gdp_epsilon(mu, job.delta), "claimed_gdp_mu": claimed_mu}


def _report(
    job, settings, m: int, attacks: dict, extra: dict, in_counts: dict[str, int], seconds: dict, n_tests: int, mutant
) -> dict:
    dp = job.dp
    claimed = {
        "epsilon": job.claimed_epsilon,
        "delta": dp.delta,
        "unit": "example",
        "accountant": dp.accountant,
        "noise_multiplier": dp.noise_multiplier,
        "sample_rate": dp.sample_rate,
        "steps": dp.steps,
        "max_grad_norm": dp.max_grad_norm,
        "void": list(job.void),
    }
    return report_content(
        recipe="dp_sgd",
        configuration=job.describe,
        claimed=claimed,
        settings=settings,
        canaries=m,
        rows=job.rows,
        attacks=attacks,
        structure=extra.get("structure"),
        built=extra.get("built"),
        expected=extra.get("expected"),
        included=in_counts,
        seconds=seconds,
        n_tests=n_tests,
        mutant=mutant,
    )


def report_content(
    *,
    recipe: str,
    configuration: dict,
    claimed: dict,
    settings,
    canaries: int,
    rows: int,
    attacks: dict,
    structure: dict | None,
    built: dict | None,
    expected: dict | None,
    included: dict,
    seconds: dict,
    n_tests: int,
    mutant: str | None,
) -> dict:
    """The report: the largest bound over ``attacks``, the reasons for a flag, the verdict."""
    best = max(attacks, key=lambda a: attacks[a]["epsilon_lower"])
    eps_lb = float(attacks[best]["epsilon_lower"])
    eps = claimed["epsilon"]
    reasons = []
    if math.isfinite(eps) and eps_lb > eps:
        reasons.append(f"the {best} attack shows epsilon >= {eps_lb:.3g}, more than the claimed {eps:.3g}")
    if structure and structure["varies_with_rows"]:
        reasons.append(
            f"the mechanism given to Opacus changes with the number of rows ({', '.join(structure['varies_with_rows'])} "
            f"differ for {rows - 1}, {rows} and {rows + 1} rows)"
        )
    if structure and structure["differs_from_plan"]:
        reasons.append(
            f"the mechanism given to Opacus differs from the plan ({', '.join(structure['differs_from_plan'])})"
        )
    red_flag = math.isfinite(eps) and bool(reasons)
    return {
        "kind": "one_run",
        "recipe": recipe,
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "configuration": configuration,
        "claimed": claimed,
        "mode": settings.mode if recipe == "dp_sgd" else "whitebox",
        "confidence": float(settings.confidence),
        "n_tests": n_tests,
        "canaries": canaries,
        "rows": rows,
        "included": included,
        "attacks": attacks,
        "best_attack": best,
        "epsilon_lower_bound": eps_lb,
        "structure": structure,
        "built": built,
        "expected": expected,
        "red_flag": red_flag,
        "reasons": reasons,
        "verdict": "red_flag" if red_flag else ("consistent" if math.isfinite(eps) else "no_guarantee"),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "mutant": mutant,
    }


def audit_planned(planned, settings, output_dir, *, progress: bool = True) -> dict:
    """Audit a planned dp_sgd run (``privtrain.recipes.dp_sgd.plan``) and write the report into ``output_dir``.

    Returns:
        The report's content (``one_run_audit.json``).

    Raises:
        UserError: the configuration cannot be audited (no DP-SGD claim, under torchrun).
    """
    from pathlib import Path

    from privtrain import distributed
    from privtrain.audit import one_run_data, one_run_report
    from privtrain.errors import UserError

    if distributed.world() is not None:
        raise UserError(
            "the one-run audit trains in one process; run `privtrain audit --one-run dp_sgd ...` "
            "outside torchrun (it audits the per-example mechanism every rank shares)."
        )
    started = time.perf_counter()
    if getattr(planned, "central", None) is not None or hasattr(planned, "population"):  # the federated recipe
        from privtrain.audit import federated_one_run

        audit, scores = federated_one_run.audit_job(
            federated_one_run.job_from_planned(planned), settings, progress=progress
        )
    else:
        job = one_run_data.job_from_planned(planned, settings.data)
        audit, scores = audit_job(job, settings, progress=progress)
    audit["seconds"]["total"] = round(time.perf_counter() - started, 2)
    audit["output_dir"] = str(Path(output_dir))
    one_run_report.write(Path(output_dir), audit, scores)
    return audit
