"""Empirical privacy audit: membership-inference attacks on a finished run.

A DP guarantee is a proof about an algorithm; the audit is evidence about the
model actually shipped. It attacks the run's own training rows (members) against
its held-out rows (non-members), turns the attack's error rates into an
empirical lower bound on ε, and raises a red flag when that bound exceeds the
claimed ε.

    >>> from privtrain.audit import audit_run
    >>> report = audit_run("outputs/dp_sgd/2024-01-01_00-00-00", shadow_data="charged")  # doctest: +SKIP
    >>> report["epsilon_lower_bound"], report["red_flag"]                                  # doctest: +SKIP

Features and the keys that turn them on (``configs/audit/default.yaml``):

- loss and confidence attacks:   always
- LiRA with K shadow models:     ``audit.shadow_models=K`` (0 turns it off)
- where shadows get their data:  ``audit.shadow_data=charged|pool``, ``audit.pool_path``
- confidence of the bound:       ``audit.confidence``
- after every training run:      ``audit.enabled=true``

Importing this package is cheap: torch loads only when an audit runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from privtrain.errors import UserError

__all__ = ["RED_FLAG_EXIT", "OneRunRedFlag", "audit_run", "preflight"]

RED_FLAG_EXIT = 3  # `privtrain audit` exit status when the empirical bound exceeds the claimed epsilon


class OneRunRedFlag(UserError):
    """``audit.one_run.enabled``: the configuration's one-run audit flagged it; the run stops before any charge."""

    exit_code = RED_FLAG_EXIT


def preflight(settings, recipe: str) -> None:
    """Check ``audit.*`` before a run does anything, so a bad audit setting is refused before any charge.

    Raises:
        UserError: the recipe cannot be audited, or shadow models on a dp_sgd run without
            ``audit.shadow_data``.
    """
    from privtrain.audit.settings import AUDITABLE, ONE_RUN_RECIPES

    if settings.one_run.enabled and recipe not in ONE_RUN_RECIPES:
        raise UserError(
            f"audit.one_run.enabled=true: the one-run audit covers {', '.join(ONE_RUN_RECIPES)}, not "
            f"{recipe}; drop audit.one_run.enabled. Nothing was run or charged."
        )
    if not settings.enabled:
        return
    if recipe not in AUDITABLE:
        raise UserError(
            f"audit.enabled=true: the {recipe} recipe cannot be audited yet (privtrain audits "
            f"{' and '.join(AUDITABLE)} runs); drop audit.enabled. Nothing was run or charged."
        )
    if recipe == "dp_sgd" and settings.shadow_models and settings.shadow_data is None:
        raise UserError(
            f"audit.enabled=true with audit.shadow_models={settings.shadow_models} needs audit.shadow_data: "
            "charged (shadows train on the private data and are charged to the ledger) or pool "
            "(with audit.pool_path=FILE); or audit.shadow_models=0 for the free attacks only."
        )


def audit_run(
    run_dir: str | Path,
    *,
    shadow_models: int | None = None,
    shadow_data: str | None = None,
    pool_path: str | None = None,
    confidence: float | None = None,
    seed: int | None = None,
    update_card: bool | None = None,
    ledger_path: str | None = None,
) -> dict:
    """Audit a run directory and write its report.

    Settings left as None come from the run's own ``audit`` settings, in its run record (``run.json``).

    Args:
        run_dir: the output directory of a finished ``dp_sgd`` (or ``synthetic``) run.
        shadow_models: K shadow models for LiRA (0: only the cheap attacks).
        shadow_data: ``"charged"`` or ``"pool"``; required when ``shadow_models > 0``.
        pool_path: the declared audit data for ``shadow_data="pool"``.
        confidence: confidence level of the ε lower bound.
        seed: randomness of the shadow models.
        update_card: append the audit section to the run's model card.
        ledger_path: the ledger that shadow training is charged to (default: the run's).

    Returns:
        The content of ``audit.json``: per-attack metrics, ``epsilon_lower_bound``,
        ``claimed``, ``red_flag`` and what the shadows cost.

    Raises:
        UserError: not a run directory, bad settings, shadows without a chosen data
            source, or a shadow charge over the source's budget (nothing is charged).
    """
    from privtrain.artifacts.record import RunRecord
    from privtrain.audit.settings import AUDITABLE, AuditSettings

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    record = RunRecord.read(run_dir)
    if record.recipe not in AUDITABLE:
        raise UserError(
            f"{run_dir}: recipe {record.recipe!r} cannot be audited yet; privtrain audit supports "
            f"{' and '.join(AUDITABLE)} runs."
        )
    settings = AuditSettings.from_dict(record.audit).with_overrides(
        shadow_models=shadow_models,
        shadow_data=shadow_data,
        pool_path=pool_path,
        confidence=confidence,
        seed=seed,
        update_card=update_card,
    )
    book, checked = _intact_evidence(run_dir, record, ledger_path)  # before anything is charged or written
    if record.recipe == "synthetic":
        from privtrain.audit import synthetic

        audit = synthetic.audit_synthetic(run_dir, record, settings)
    else:
        from privtrain.audit import runner

        audit = runner.audit_dp_sgd(runner.read_run(run_dir, record), settings, ledger_path)
    _record_files(run_dir, book, checked, audit)
    if audit.get("red_flag"):
        print(
            f"privtrain: RED FLAG: the audit of {run_dir} shows epsilon >= {audit['epsilon_lower_bound']:.3g}, "
            f"more than the claimed {audit['claimed']['epsilon']:.3g}; see its model_card.md.",
            file=sys.stderr,
            flush=True,
        )
    return audit


def _intact_evidence(run_dir: Path, record, ledger_path: str | None):
    """The run's ledger and what it recorded, once every file of the run matches it: an audit reads the
    run's claim (run.json) and rewrites its card, so it never starts from a file someone edited.

    Raises:
        UserError: a file differs from what the ledger holds (one line; nothing is charged or written).
    """
    from privtrain import ledger
    from privtrain.artifacts import evidence

    book = ledger.open(ledger_path if ledger_path is not None else record.ledger["path"], create=False)
    checked = evidence.recorded(book, record.run_id)
    evidence.require_intact(run_dir, checked, command="privtrain audit")
    return book, checked


def _record_files(run_dir: Path, book, checked, audit: dict) -> None:
    """Chain the files this audit wrote (audit.json, its ROC and, unless ``--no-card``, the card it added its
    section to), each naming the version it replaces, so ``privtrain verify RUN_DIR`` tells an audit from
    an edit. Files the audit did not write are never re-recorded."""
    from privtrain.artifacts import evidence
    from privtrain.audit.report import AUDIT_JSON, ROC_PNG

    written = [AUDIT_JSON, ROC_PNG] + ([audit["card"]] if audit.get("card") else [])
    evidence.rechain(book, run_dir, checked, written, why="audit")
