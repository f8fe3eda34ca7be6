"""The Python API and the one run protocol every recipe goes through.

    privtrain.run("dp_sgd", ["privacy.target_epsilon=1"])

Notebooks and benchmarks use :func:`run`; the CLI uses Hydra's own launcher; both end in
:func:`execute`, which owns the protocol, so no recipe can get the accounting wrong on its own:

1. typed settings from the config (the config border);
2. the audit preflight (a run that cannot be audited is refused before anything happens);
3. the recipe's plan: it identifies the data (fingerprint, source) and describes its mechanisms,
   computed from the config and public facts, before reading any row for training;
4. the run request is built once; the ledger's one door builds every charge (each source whose people
   the rows belong to, each unit), checks each against the policy, and reserves them all in one
   transaction (recording a new policy with them), or refuses with one line;
5. the environment's SBOM and licences are written (built before the charge, cached per environment);
   the recipe trains and writes its artifacts and run record; the ledger commits what it did, the
   SBOM's files among the hashed artifacts (a crash stays charged at the reservation);
6. the audit, when asked for, reads the run record.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from privtrain import config, policy, recipes
from privtrain.errors import UserError
from privtrain.result import Reserved, RunResult


def run(
    recipe: str, overrides: list[str] | tuple[str, ...] = (), *, output_dir: str | Path | None = None
) -> RunResult | None:
    """Compose ``configs/<recipe>.yaml`` with Hydra overrides and run it.

    Args:
        recipe: ``"dp_sgd"``, ``"federated"`` or ``"synthetic"``.
        overrides: Hydra overrides, e.g. ``["privacy.target_epsilon=1", "model=mlp"]``.
        output_dir: where artifacts go; default ``outputs/<recipe>/<time>-<id>``.

    Returns:
        The run's :class:`~privtrain.result.RunResult` (None on torchrun's ranks other than 0, which only train).

    Raises:
        UserError: bad input (nothing is charged to the ledger).
    """
    cfg = config.compose(recipe, overrides)
    if output_dir is None:
        output_dir = Path("outputs") / recipe / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-{secrets.token_hex(3)}"
    return execute(recipe, cfg, Path(output_dir))


def audit_one_run(
    recipe: str,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    output_dir: str | Path | None = None,
    mode: str | None = None,
    canaries: int | None = None,
    confidence: float | None = None,
) -> dict:
    """The one-run audit of a configuration: retrain it on public rows with canaries; nothing is charged.

    Settings come from ``audit.one_run.*`` (overridable here); see docs/audit.md.

    Returns:
        The report (``one_run_audit.json``): ``epsilon_lower_bound``, ``claimed``, ``red_flag``, each attack.

    Raises:
        UserError: bad input, or a recipe the audit does not cover.
    """
    from privtrain.audit import one_run
    from privtrain.audit.settings import ONE_RUN_RECIPES

    if recipe not in ONE_RUN_RECIPES:
        config.check_recipe(recipe)
        raise UserError(
            f"privtrain audit --one-run audits {', '.join(ONE_RUN_RECIPES)}; the {recipe} recipe is not "
            "covered yet (docs/audit.md)."
        )
    settings = config.settings(recipe, config.compose(recipe, list(overrides)))
    one = settings.audit.one_run.with_overrides(mode=mode, canaries=canaries, confidence=confidence)
    if output_dir is None:
        output_dir = Path("outputs") / "one_run_audit" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-{secrets.token_hex(3)}"
    planned = recipes.get(recipe).plan(settings)  # reads no row for training; nothing is reserved or charged
    return one_run.audit_planned(planned, one, Path(output_dir), progress=_progress(settings))


def _progress(settings: config.RunSettings) -> bool:
    return bool(settings.train.progress if settings.train is not None else settings.fl is None or settings.fl.progress)


def execute(recipe: str, cfg, output_dir: Path | str) -> RunResult | None:
    """Run a composed config through the run protocol. Shared by the API and the CLI. None: another torchrun rank."""
    return execute_settings(config.settings(recipe, cfg), Path(output_dir))


def execute_settings(settings: config.RunSettings, output_dir: Path) -> RunResult | None:
    """The run protocol on typed settings (see the module docstring).

    Under torchrun (:mod:`privtrain.distributed`) rank 0 runs the protocol and the other ranks train
    their share once it has reserved the budget; they return None.
    """
    from privtrain import distributed

    world = distributed.world()
    if world is None:
        return _protocol(settings, Path(output_dir), _Go(None))
    if settings.recipe != "dp_sgd":
        raise UserError(
            f"torchrun runs the dp_sgd recipe; run {settings.recipe} as one process "
            f"(privtrain run {settings.recipe} ...)."
        )
    from privtrain import devices

    with distributed.process_group(devices.resolve(settings.device)):
        if world.main:
            return _protocol(settings, Path(output_dir), _Go(distributed.announce))
        _worker(settings, Path(output_dir))
        return None


class _Go:
    """Rank 0's word to the other ranks of a torchrun job: go (the budget is reserved), stop, or refused.
    In a single process it says nothing."""

    def __init__(self, send) -> None:
        self.send, self.sent = send, False

    def __call__(self, *message) -> None:
        if self.send is not None and not self.sent:
            self.sent = True
            self.send(message)


def _protocol(settings: config.RunSettings, output_dir: Path, go: _Go) -> RunResult:
    from privtrain.crypto import files, keys

    try:
        with files.using(keys.resolve(settings.key_file)):  # a key that cannot be used is refused before any read
            return _reserve_train_commit(settings, output_dir, go)
    except UserError as exc:
        go("refused", str(exc))  # the other ranks stop with the same line, having read nothing
        raise
    except BaseException:
        go("refused", "rank 0 failed before training; see its error")
        raise


def _reserve_train_commit(settings: config.RunSettings, output_dir: Path, go: _Go) -> RunResult:
    from privtrain import audit, ledger, tracking
    from privtrain.artifacts import run_dir, sbom
    from privtrain.artifacts.run_dir import hash_artifacts
    from privtrain.config.facts import run_facts
    from privtrain.crypto import files

    module = recipes.get(settings.recipe)
    output_dir = Path(output_dir).resolve()  # artifacts are hashed relative to it; engines may change directory
    run_dir.check_new(output_dir)
    audit.preflight(settings.audit, settings.recipe)
    tracking.preflight(settings.tracking)
    book = ledger.open(settings.ledger.path)
    facts = run_facts(settings)
    rules = policy.evaluate(book, facts, settings.ledger.policy)  # before any row is read (consent included)
    planned = module.plan(settings)
    request = ledger.RunRequest.of(
        settings.recipe,
        planned.access,
        config_hash=settings.config_hash,
        ledger=settings.ledger,
        policy=rules,
        facts=facts,
    )
    if settings.ledger.plan_only:
        go("stop")
        plans = book.plan(request)
        text = plans.render() + ("" if rules is None else "\n" + rules.render())
        return RunResult(
            settings.recipe,
            output_dir,
            {},
            [],
            planned.dataset_info,
            {"plan": text, "path": str(book.path), "fits": plans.fits},
            dry_run=True,
        )
    one_run = _one_run_gate(settings, planned, output_dir)  # audit.one_run: the mechanism, before any charge
    # The folder is made before the charge (a folder the run cannot write costs no budget) and removed again if
    # the run is refused or cannot start (nothing charged, nothing left behind).
    with run_dir.Provisional(output_dir) as folder:
        environment = sbom.environment_bom()  # before the charge: a run that cannot record its SBOM costs nothing
        # The tracker starts before the charge: a tracking server that cannot be reached costs no budget.
        tracker = tracking.start(
            settings.tracking,
            recipe=settings.recipe,
            run_name=output_dir.name,
            config_yaml=settings.config_yaml,
            output_dir=output_dir,
        )
        with tracking.active(tracker), book.charging(request) as run:
            # Only now, with every budget the run touches reserved, does the recipe read rows for training.
            folder.keep()
            files.bind(run.run_id)  # sealed files are sealed as this run's (docs/governance/encryption.md)
            go("go")
            sbom_files = environment.write(output_dir)  # the environment the run ran in, hashed with its artifacts
            summary = _card_summary(run.summary, rules, settings.dataset.tags, book, facts)
            reserved = Reserved(
                run.run_id, run.charge.source, run.charge.source_name, run.plan.lineage, summary, environment.summary()
            )
            outcome = module.train(planned, reserved, output_dir)
            if one_run is not None:  # the card states the configuration's audit; it is hashed with the other files
                from privtrain.audit.one_run_report import add_to_card

                add_to_card(output_dir / "model_card.md", one_run)
            outcome.files = [*outcome.files, *sbom_files, *(one_run or {}).get("paths", [])]
            run_dir.lock(outcome.files, output_dir)  # 0600 files, 0700 folders, whichever library wrote them
            run.commit(
                outcome.events,
                artifacts=hash_artifacts(outcome.files, output_dir),
                epsilon=outcome.epsilon,
                derived=outcome.derived,
            )
            tracker.finish(outcome.result, outcome.files)
    result = outcome.result
    if one_run is not None:
        result.metrics["one_run_audit"] = {
            k: one_run[k] for k in ("epsilon_lower_bound", "best_attack", "verdict", "confidence", "canaries", "mode")
        }
    if settings.audit.enabled:
        result.metrics["audit"] = audit.audit_run(output_dir)
    return result


def _one_run_gate(settings: config.RunSettings, planned, output_dir: Path) -> dict | None:
    """``audit.one_run.enabled``: audit the planned mechanism on public rows before anything is reserved; a red
    flag stops the run (exit 3) with nothing charged. Returns the report (its files under ``paths``)."""
    if not settings.audit.one_run.enabled:
        return None
    from privtrain.audit import OneRunRedFlag, one_run
    from privtrain.audit.one_run_report import JSON, MARKDOWN, PNG

    where = output_dir / "one_run_audit"
    report = one_run.audit_planned(planned, settings.audit.one_run, where, progress=_progress(settings))
    if report["red_flag"]:
        raise OneRunRedFlag(
            f"the one-run audit of this configuration found a red flag ({'; '.join(report['reasons'])}); "
            f"nothing was charged; see {where / MARKDOWN}"
        )
    report["paths"] = [where / name for name in (JSON, MARKDOWN, PNG)]
    return report


def _card_summary(summary, rules: policy.Evaluation | None, declared_tags: tuple[str, ...], book, facts):
    """The ledger's summary of the run, with the policy evaluated, the source's tags and its provenance, for the card."""
    from privtrain.policy import consent

    def card() -> dict:
        out = summary()
        out["governance"] = consent.summary(book, out["charges"], facts, None if rules is None else rules.policy)
        tags = set(declared_tags) | (rules.tags() if rules else set())
        if tags:
            out["tags"] = sorted(tags)
        if rules is not None:
            out["policy"] = rules.card()
        return out

    return card


def _worker(settings: config.RunSettings, output_dir: Path) -> None:
    """A torchrun rank other than 0: wait until rank 0 has reserved the budget, then train its share."""
    from privtrain import distributed

    try:
        distributed.wait_for_go()
    except distributed.Stop:
        return None
    from privtrain.crypto import files, keys

    module = recipes.get(settings.recipe)
    with files.using(keys.resolve(settings.key_file)):  # a resumed checkpoint may be sealed
        module.train(module.plan(settings), None, output_dir)  # writes nothing: rank 0 evaluates and commits
    return None
