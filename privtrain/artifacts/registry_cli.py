"""``privtrain registry verify|rollback NAME``: registered releases against their ledger entries
(see :mod:`privtrain.artifacts.registry` and docs/governance/registry.md)."""

from __future__ import annotations

import argparse

from privtrain.artifacts import registry


def _verify_cmd(args: argparse.Namespace) -> int:
    n, problems = registry.verify(args.name, uri=args.registry_uri, ledger_path=args.ledger)
    if problems:
        print(f"model {args.name}: {len(problems)} problem(s): {' | '.join(problems)}")
        return 1
    print(f"model {args.name}: all {n} versions hold the files and tags their ledger entries recorded")
    return 0


def _rollback_cmd(args: argparse.Namespace) -> int:
    print(
        registry.describe(registry.rollback(args.name, args.to_version, uri=args.registry_uri, ledger_path=args.ledger))
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "registry",
        help="verify or roll back models released to the MLflow registry",
        description="Registered releases against their ledger entries (see docs/governance/registry.md).",
    )
    sub = p.add_subparsers(dest="registry_command", metavar="COMMAND", required=True)
    for name, help_, func in (
        ("verify", "check every version's artifacts and tags against the ledger", _verify_cmd),
        ("rollback", "register an earlier version's release again, as a recorded rollback", _rollback_cmd),
    ):
        q = sub.add_parser(name, help=help_, description=help_)
        q.add_argument("name", help="registered model name")
        if name == "rollback":
            q.add_argument("--to-version", required=True, metavar="V", help="the version to restore")
        q.add_argument(
            "--registry-uri",
            default=None,
            metavar="URI",
            help="MLflow tracking/registry URI (default: sqlite:///<the ledger's folder>/registry.db)",
        )
        q.add_argument("--ledger", default=None, metavar="PATH", help="the ledger (default: the project's)")
        q.set_defaults(func=func)
