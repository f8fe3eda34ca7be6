"""``privtrain audit RUN_DIR``: membership-inference audit of a finished run.
``privtrain audit --one-run RECIPE [overrides]``: one-run audit of a configuration (nothing charged).

Exit status: 0 when the audit is consistent with the claim (or there is no
claim), 3 on a red flag (the empirical ε lower bound exceeds the claimed ε),
2 on bad input. Importing this module loads no torch.

The one-run audit composes a config and plans a recipe, which this layer may not import: the top-level
CLI hands its handler in as ``one_run_command`` (:func:`privtrain.cli._parser`).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "audit",
        help="membership-inference audit of a run: empirical epsilon lower bound vs the claim",
        description="Attack a run's model with membership inference (loss, confidence and LiRA shadow models), "
        "compute an empirical lower bound on epsilon, and write audit.json, audit_roc.png and a model card "
        "section. Settings default to the run's audit.* config, then configs/audit/default.yaml. "
        "With --one-run RECIPE [overrides], audit the configuration's mechanism instead: retrain it once on public "
        "rows with canaries (DP-SGD or central DP-FedAvg), nothing charged, and bound epsilon from below. "
        "Exits 3 if the lower bound exceeds the claimed epsilon.",
        epilog="examples: privtrain audit outputs/dp_sgd/RUN --shadow-models 0 | "
        "privtrain audit outputs/dp_sgd/RUN --shadow-data charged | "
        "privtrain audit outputs/dp_sgd/RUN --shadow-data pool --pool public.csv | "
        "privtrain audit --one-run dp_sgd privacy.target_epsilon=2 --mode both",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="RUN_DIR | OVERRIDE",
        help="output directory of a dp_sgd or synthetic run; with --one-run, the recipe's Hydra overrides",
    )
    p.add_argument(
        "--one-run",
        dest="one_run",
        default=None,
        metavar="RECIPE",
        help="audit the configuration RECIPE [overrides] in one training run with canaries, on public rows "
        "(nothing charged): an epsilon lower bound beside the claim; see docs/audit.md",
    )
    p.add_argument(
        "--mode",
        choices=("whitebox", "blackbox", "both"),
        default=None,
        help="--one-run: Dirac canaries in every update, mislabeled canaries on the final model, or both",
    )
    p.add_argument("--canaries", type=int, default=None, metavar="M", help="--one-run: number of canaries (1000)")
    p.add_argument(
        "--output",
        default=None,
        metavar="DIR",
        help="--one-run: where the report goes (default outputs/one_run_audit/<time>)",
    )
    p.add_argument(
        "--shadow-models",
        type=int,
        default=None,
        metavar="K",
        help="LiRA shadow models (0 = only the loss and confidence attacks; default: audit.shadow_models)",
    )
    p.add_argument(
        "--shadow-data",
        choices=("charged", "pool"),
        default=None,
        help="charged: shadows train on the private data and are charged to the ledger; "
        "pool: shadows train only on --pool",
    )
    p.add_argument(
        "--pool",
        dest="pool_path",
        default=None,
        metavar="FILE",
        help="CSV/Parquet audit data for --shadow-data pool (same columns, disjoint from the private rows)",
    )
    p.add_argument("--confidence", type=float, default=None, help="confidence of the epsilon lower bound (0.95)")
    p.add_argument("--seed", type=int, default=None, help="seed of the shadow models (default: the run's seed)")
    p.add_argument(
        "--no-card",
        dest="update_card",
        action="store_false",
        default=None,
        help="do not append the audit section to model_card.md",
    )
    p.add_argument(
        "--ledger",
        dest="ledger_path",
        default=None,
        metavar="PATH",
        help="ledger charged for shadow training (default: the run's, or $PRIVTRAIN_LEDGER)",
    )
    p.add_argument("--json", action="store_true", help="print audit.json instead of the summary")
    p.set_defaults(func=_cmd_audit)


def _cmd_audit(args: argparse.Namespace) -> int:
    import json

    from privtrain.audit import RED_FLAG_EXIT, audit_run
    from privtrain.audit.report import summary
    from privtrain.errors import UserError

    if args.one_run is not None:
        return args.one_run_command(args)
    if len(args.targets) != 1:
        raise UserError(
            "privtrain audit takes one run directory (privtrain audit outputs/dp_sgd/RUN), or "
            "--one-run RECIPE [overrides] to audit a configuration."
        )
    if args.mode is not None or args.canaries is not None or args.output is not None:
        raise UserError("--mode, --canaries and --output belong to --one-run; drop them, or add --one-run RECIPE.")
    audit = audit_run(
        args.targets[0],
        shadow_models=args.shadow_models,
        shadow_data=args.shadow_data,
        pool_path=args.pool_path,
        confidence=args.confidence,
        seed=args.seed,
        update_card=args.update_card,
        ledger_path=args.ledger_path,
    )
    if args.json:
        from privtrain.artifacts.run_dir import _jsonable

        print(json.dumps(_jsonable(audit), indent=2, sort_keys=True))
    else:
        print(summary(audit))
    return RED_FLAG_EXIT if audit.get("red_flag") else 0


def one_run_command(audit_one_run):
    """The handler of ``--one-run``, around ``privtrain.api.audit_one_run`` (handed in by the top-level CLI)."""

    def command(args: argparse.Namespace) -> int:
        import json
        import sys

        from privtrain.artifacts.run_dir import _jsonable
        from privtrain.audit import RED_FLAG_EXIT
        from privtrain.audit.one_run_report import summary

        audit = audit_one_run(
            args.one_run,
            args.targets,
            output_dir=args.output,
            mode=args.mode,
            canaries=args.canaries,
            confidence=args.confidence,
        )
        print(json.dumps(_jsonable(audit), indent=2, sort_keys=True) if args.json else summary(audit), flush=True)
        if audit["red_flag"]:
            print(f"privtrain: RED FLAG: {'; '.join(audit['reasons'])}", file=sys.stderr, flush=True)
            return RED_FLAG_EXIT
        return 0

    return command
