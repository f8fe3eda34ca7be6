"""The ``privtrain`` command.

    privtrain run RECIPE [overrides...] [-m] [--cfg job] [--dry-run]
    privtrain ls
    privtrain ledger show|runs|budget|verify|export|plot ...
    privtrain sbom [--output DIR]

Start-up stays fast: ``--help``, ``ls`` and ``ledger`` import no torch, flwr or
sdv. Bad input prints one line and exits 2; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from privtrain import __version__
from privtrain.errors import UserError, environment_errors

# Each module has ``register(subparsers)`` and must not import torch, flwr or sdv at import time.
_SUBCOMMAND_MODULES = (
    "privtrain.ledger.cli",
    "privtrain.audit.cli",
    "privtrain.artifacts.verify",
    "privtrain.inference",
    "privtrain.config.policy_cli",
    "privtrain.artifacts.release",
    "privtrain.artifacts.sbom",
    "privtrain.artifacts.approvals",
    "privtrain.artifacts.registry_cli",
    "privtrain.artifacts.keys_cli",
    "privtrain.monitoring.cli",
)

_HYDRA_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--info",
    "--experimental-rerun",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privtrain",
        description="Train models on private data with differential privacy, federated learning or "
        "synthetic data; every run is charged to a privacy ledger.",
    )
    parser.add_argument("--version", action="version", version=f"privtrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run a recipe with Hydra overrides",
        description="Run a recipe. Overrides use Hydra's grammar (key=value, group=option, +new.key=value). "
        "-m/--multirun sweeps comma-separated values; --cfg job prints the composed config; "
        "--dry-run prints the privacy plan and touches nothing.",
        epilog="example: privtrain run dp_sgd privacy.target_epsilon=1 model=mlp",
    )
    run.add_argument("recipe", help="dp_sgd, federated or synthetic (see `privtrain ls`)")
    run.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides and flags")
    run.set_defaults(func=_cmd_run)

    ls = sub.add_parser("ls", help="list recipes and config groups with their options")
    ls.set_defaults(func=_cmd_ls)

    for module in _SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    sub.choices["audit"].set_defaults(one_run_command=_one_run_audit)  # the audit layer cannot plan a recipe
    return parser


def _one_run_audit(args) -> int:
    from privtrain.api import audit_one_run
    from privtrain.audit.cli import one_run_command

    return one_run_command(audit_one_run)(args)


def _cmd_ls(args) -> int:
    from privtrain import config

    print("recipes:")
    for name in config.recipes():
        print(f"  {name:<14} privtrain run {name}")
    print("config groups (override with group=option):")
    for group, options in config.groups().items():
        if options:
            print(f"  {group:<14} {', '.join(options)}")
    print("federated settings (fl.*) live in configs/federated.yaml, the options every synthesizer shares in")
    print("configs/synthetic.yaml (synth.*); see every setting of a recipe with: privtrain run RECIPE --cfg job")
    return 0


def _cmd_run(args) -> int:
    from privtrain import config

    config.check_recipe(args.recipe)
    rest = list(args.overrides)
    if "--dry-run" not in rest:
        overrides, flags = _split_flags(rest)
        config.validate_overrides(args.recipe, [*_search_path(flags), *overrides])
        return _hydra_main(args.recipe, overrides, flags)
    # A dry run writes nothing: Hydra's run folder is a temporary one, removed afterwards.
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix="privtrain-dry-run-")
    rest = [a for a in rest if a != "--dry-run"] + [
        "ledger.plan_only=true",
        f"hydra.run.dir={scratch}/run",
        f"hydra.sweep.dir={scratch}/sweep",
        "hydra.output_subdir=null",
    ]
    overrides, flags = _split_flags(rest)
    config.validate_overrides(args.recipe, [*_search_path(flags), *overrides])
    try:
        return _hydra_main(args.recipe, overrides, flags)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _split_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, Hydra flags with their values), keeping each list's order."""
    overrides, flags, takes_value = [], [], False
    for arg in argv:
        if takes_value:
            flags.append(arg)
            takes_value = False
        elif arg.startswith("-"):
            flags.append(arg)
            takes_value = arg in _HYDRA_FLAGS_WITH_VALUE
        else:
            overrides.append(arg)
    return overrides, flags


def _search_path(flags: list[str]) -> list[str]:
    """Hydra's ``--config-dir DIR`` (``-cd``) adds DIR to the config search path when Hydra runs; the same search path
    as an override, so that validating the overrides first finds the configs there too (e.g. dataset=mine).

    Raises:
        UserError: DIR is not a folder.
    """
    dirs = [value for flag, value in zip(flags, flags[1:]) if flag in ("--config-dir", "-cd")]
    dirs += [flag.split("=", 1)[1] for flag in flags if flag.startswith(("--config-dir=", "-cd="))]
    if not dirs:
        return []
    from pathlib import Path

    found = []
    for name in dirs:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise UserError(
                f"--config-dir {name}: no such folder; pass a folder holding config groups, e.g. "
                "DIR/dataset/mine.yaml for dataset=mine."
            )
        found.append(f"file://{path.resolve()}")
    return [f"hydra.searchpath=[{','.join(found)}]"]


def _hydra_main(recipe: str, overrides: list[str], flags: list[str]) -> int:
    """Hand over to ``@hydra.main``: run dirs, sweeps (-m) and --cfg come from Hydra."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from privtrain import config

    def task(cfg) -> None:
        import logging

        from privtrain.api import execute

        # Hydra sets the root logger to INFO; libraries' INFO chatter (Ray, alembic, SDV) drowns the summary.
        logging.getLogger().setLevel(logging.WARNING)

        try:
            with environment_errors("privtrain run"):
                cfg = config.resumed(cfg, HydraConfig.get().overrides.task)  # resume=: the checkpoint's run's data
                result = execute(recipe, cfg, HydraConfig.get().runtime.output_dir)
        except UserError as exc:
            _print_error(exc)
            raise SystemExit(exc.exit_code) from None
        if result is None:  # another torchrun rank: rank 0 reports
            return
        print(result.summary(), flush=True)
        if result.dry_run and result.ledger.get("fits") is False:  # the plan says the run would be refused
            raise SystemExit(UserError.exit_code)
        audit = result.metrics.get("audit") or {}
        if audit.get("red_flag"):
            from privtrain.audit import RED_FLAG_EXIT

            print(
                "privtrain: RED FLAG: the empirical privacy audit contradicts the claimed epsilon; "
                f"see {result.output_dir / 'model_card.md'}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(RED_FLAG_EXIT)

    config.register_resolvers(fresh=True)
    if int(os.environ.get("RANK", "0") or 0) > 0:  # torchrun: only rank 0 has a run directory and logs
        import tempfile

        flags = [*flags]
        overrides = [
            *overrides,
            f"hydra.run.dir={tempfile.mkdtemp(prefix='privtrain-rank')}",
            "hydra.output_subdir=null",
            "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled",
        ]
    # Hydra's parser takes the overrides as one positional list, so they go before the flags.
    sys.argv = [f"privtrain run {recipe}", *overrides, f"hydra.job.name={recipe}", *flags]
    # Hydra prints an error in its own run-directory set-up (a read-only working directory, a name too long)
    # as a traceback; told to re-raise it, it reaches environment_errors and becomes one line.
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with environment_errors("the run's output folder (hydra.run.dir; the working directory by default)"):
            hydra.main(version_base=None, config_path=str(config.config_dir()), config_name=recipe)(task)()
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved
    return 0


def _print_error(exc: UserError) -> None:
    lines = str(exc).splitlines() if exc.multiline else [str(exc)]
    print(f"privtrain: error: {' '.join(lines[0].split())}", file=sys.stderr, flush=True)
    for line in lines[1:]:
        print(f"  {' '.join(line.split())}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with environment_errors(f"privtrain {args.command}"):
            return int(args.func(args) or 0)
    except UserError as exc:
        _print_error(exc)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `privtrain ledger export | head`
        sys.stderr.close()
        return 0


def entry() -> None:
    """The ``privtrain`` command: :func:`main`, then a quick exit.

    Once a command has finished (its files written and closed, its ledger transactions committed), the
    interpreter's teardown of torch, SciPy and pandas still takes about a second. After flushing the
    output, shutting logging down and running the ``atexit`` handlers (Ray's among them), the command
    skips that teardown, unless a non-daemon thread is still running: then it exits normally.
    """
    try:
        code = main()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            raise
        code = 0 if exc.code is None else int(exc.code)
    import threading

    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    import atexit
    import logging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`privtrain ledger export | head`)
            pass
    logging.shutdown()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    entry()
