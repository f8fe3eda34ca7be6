"""`privtrain ledger …`: read and administer the privacy ledger.

Imports nothing heavy at start-up (no torch, flwr or sdv; matplotlib only in `plot`; dp-accounting
only when a composition is not cached; pandas only to hash a file's rows).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from privtrain.errors import UserError


def _open(args, *, create: bool = False):
    """The ledger of ``--path`` or the project's; read-only commands never create one."""
    from privtrain import ledger

    # --path may come before the subcommand (ledger --path F show) or after it (ledger show --path F)
    return ledger.open(getattr(args, "path", None) or getattr(args, "ledger_path", None), create=create)


def _number(name: str):
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number for {name}, got {text!r}") from None

    return parse


def cmd_show(args) -> int:
    from privtrain.ledger.render import render_show

    led = _open(args)
    print(render_show(led.sources(), str(led.path)))
    from privtrain.ledger.consent_cli import lines

    for key, (name, prov) in led.provenances().items():
        print(lines(name or key[:12], prov)[0])
    current = led.policy()
    if current is not None:
        print(
            f"policy: {current.get('file')} (sha256 {str(current.get('sha256'))[:12]}), recorded in entry "
            f"{current['entry']} at {current['time']}; every run entry names the policy it was checked against"
        )
    return 0


def cmd_runs(args) -> int:
    from privtrain.ledger.render import render_runs, render_stale

    led = _open(args)
    if args.stale:
        print(render_stale(led.open_reservations(), str(led.path)))
        return 0
    if not args.source:
        raise UserError("ledger runs needs a SOURCE (name, key or fingerprint prefix), or --stale.")
    key = led.resolve(args.source)
    scope = _scope(led, key, args.population) if args.population else None
    entries = led.entries(key, args.unit, scope)
    where = f"{led.name(key) or key[:12]} ({key})" + ("" if args.unit is None else f", unit={args.unit}")
    print(render_runs(entries, where))
    return 0


def _scope(led, key: str, population: str) -> str:
    """A population of ``key`` from its key, a prefix of it, or its label."""
    scopes = {e.scope: e.scope_label for e in led.entries(key) if e.scope}
    matches = [s for s, label in scopes.items() if s.startswith(population) or label == population]
    if len(matches) != 1:
        known = "; ".join(f"{s[:12]} ({label})" for s, label in scopes.items()) or "none yet"
        raise UserError(
            f"--population {population!r} {'is ambiguous' if matches else 'is unknown'} for source "
            f"{led.name(key) or key[:12]!r}; its populations: {known}."
        )
    return matches[0]


def _source_for_budget(led, args) -> str:
    """A built-in or declared name, a known source, or a file (hashed and registered so subsets link)."""
    path = Path(args.source).expanduser()
    if not path.is_file():
        return args.source
    from privtrain.data.files import read_table
    from privtrain.data.fingerprint import canonicalize
    from privtrain.sources import Source, check_name

    frame, fingerprint = canonicalize(read_table(str(path), "parquet" if path.suffix == ".parquet" else "csv"))
    if args.unit == "example":  # δ < 1/n for the file's rows, before its rows are registered
        from privtrain.ledger.model import check_budget

        check_budget(args.epsilon, args.delta, len(frame), what=f"--delta for {path.name}:")
    if args.declare:
        source = Source(check_name(args.declare, "--source"), args.declare, "declared")
    else:
        source = Source(fingerprint, path.stem, "content")
        found = led.links(frame, fingerprint, id_column=args.id_column, exclude={fingerprint})
        if found:
            raise UserError(
                f"{path} holds the people of a known source: {found[0].reason}; set that source's budget "
                f"(privtrain ledger budget set {found[0].name} ...), or pass --source NAME to declare "
                "this file a source of its own."
            )
    return led.register_table(source, fingerprint, frame, id_column=args.id_column)


def cmd_budget_set(args) -> int:
    led = _open(args, create=True)
    key = _source_for_budget(led, args)
    scope = ""
    if args.unit == "client":
        if not args.population:
            raise UserError(
                "--unit client needs --population: a client-level budget belongs to a federated "
                "population (see them with `privtrain ledger show`)."
            )
        scope = _scope(led, led.resolve(key), args.population)
    budget = led.set_budget(key, args.unit, args.epsilon, args.delta, scope=scope, force=args.force)
    key = led.resolve(key)
    used = led.filter_epsilon(key, args.unit, scope)
    print(
        f"budget for {led.name(key) or key[:12]} ({key[:12]}), unit={args.unit}"
        f"{', population ' + scope[:12] if scope else ''}: ε={budget.epsilon:g} at δ={budget.delta:g} "
        f"(entry {budget.entry_id}); spent ε={led.spent(key, args.unit, scope):.4g} (PLD estimate), "
        f"filter ε={used:.4g}, remaining ε={max(0.0, budget.epsilon - used):.4g}"
    )
    if used > budget.epsilon:
        print(
            "note: the budget is below what is already spent (--force): every further run on this source is "
            "refused until the budget is raised again."
        )
    return 0


def cmd_budget_remove(args) -> int:
    led = _open(args)
    key = led.resolve(args.source)
    scope = _scope(led, key, args.population) if args.population else ""
    led.remove_budget(key, args.unit, scope=scope)
    print(
        f"budget removed for {led.name(key) or key[:12]}, unit={args.unit}: runs are tracked, no longer refused "
        "(recorded in the chain)."
    )
    return 0


def cmd_reconcile(args) -> int:
    led = _open(args)
    closed = led.reconcile(args.run or None)
    if not closed:
        print("no stale reservation to close (see `privtrain ledger runs --stale`)")
    for e in closed:
        print(f"closed run {e.run_id} as failed (entry {e.id}); it stays charged at its reservation (entry {e.ref})")
    return 0


def cmd_verify(args) -> int:
    report = _open(args).verify(head=args.head)
    print(report.message + (f"; extends the published head {args.head}" if report.ok and args.head else ""))
    return 0 if report.ok else 1


def cmd_head(args) -> int:
    count, digest = _open(args).head()
    print(f"{count}:{digest}")
    return 0


def cmd_id(args) -> int:
    led = _open(args)
    identity = led.identity()
    if identity is None:
        raise UserError(f"the ledger {led.location} is empty: it gets its id with its first entry (a budget or a run).")
    count, digest = led.head()
    print(
        f"{identity}\n# to pin this ledger in the project's policy.yaml:\nledger:\n  id: {identity}\n"
        f'  anchor: "{count}:{digest}"'
    )
    return 0


def cmd_accept_damage(args) -> int:
    entry = _open(args).accept_damage(args.reason, exhaust_budgets=args.exhaust_budgets)
    print(
        f"recorded: the damage ({entry.detail['problem']}) is accepted (entry {entry.id}): "
        f"{entry.detail['outcome']}; what the ledger counts as spent was not lowered, and later changes to the "
        "entries before it are still detected"
    )
    return 0


def cmd_export(args) -> int:
    from privtrain.ledger.render import export_csv, export_json

    led = _open(args)
    entries = led.entries(args.source) if args.source else led.entries()
    text = export_json(entries) if args.format == "json" else export_csv(entries)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise UserError(f"cannot write --output {args.output}: {exc.strerror}.") from None
        print(f"wrote {len(entries)} entries to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_plot(args) -> int:
    from privtrain.ledger.plot import plot

    led = _open(args)
    key = led.resolve(args.source)
    scope = _scope(led, key, args.population) if args.population else ""
    summary = next((s for s in led.sources() if (s.source, s.unit, s.scope) == (key, args.unit, scope)), None)
    if summary is None:
        raise UserError(f"source {args.source!r} has no entries for unit={args.unit}; try --unit client --population.")
    output = Path(args.output or f"ledger-{(summary.name or key[:12])}-{args.unit}.png")
    plot(summary, led.core.runs(key, args.unit, scope), output)
    print(f"wrote {output}")
    return 0


def cmd_migrate(args) -> int:
    from privtrain.ledger.migrate import migrate

    print(migrate(getattr(args, "path", None) or getattr(args, "ledger_path", None) or _default()))
    return 0


def _default() -> Path | str:
    from privtrain.ledger import default_path

    return default_path()


def register(subparsers) -> None:
    """Add the ``ledger`` command (and its subcommands) to an argparse subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--path",
        default=argparse.SUPPRESS,
        help="ledger file or postgresql:// URL (default: $PRIVTRAIN_LEDGER, else ./.privtrain/ledger.db)",
    )
    p = subparsers.add_parser(
        "ledger",
        help="read and administer the privacy ledger",
        description="Read and administer the privacy ledger: budgets per data source.",
    )
    p.add_argument(
        "--path",
        dest="ledger_path",
        default=None,
        help="ledger file or postgresql:// URL (default: $PRIVTRAIN_LEDGER, else ./.privtrain/ledger.db)",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    sub = p.add_subparsers(dest="ledger_command", metavar="COMMAND")
    unit = dict(choices=("example", "client"), default="example", help="unit of privacy (default: example)")
    population = dict(
        default=None,
        help="a federated population of the source (key prefix or label): client-level budgets belong to it",
    )

    s = sub.add_parser("show", parents=[common], help="budget, spent and remaining per source (and population)")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("runs", parents=[common], help="the entries of one source, or the stale reservations")
    s.add_argument("source", nargs="?", help="source name, key or fingerprint prefix")
    s.add_argument("--unit", choices=("example", "client"), default=None)
    s.add_argument("--population", **population)
    s.add_argument(
        "--stale",
        action="store_true",
        help="list reservations never committed nor failed, and whether their process is gone",
    )
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("reconcile", parents=[common], help="close stale reservations as failed (still charged)")
    s.add_argument(
        "--run",
        action="append",
        metavar="RUN_ID",
        help="close this run's reservation (repeatable); default: every one whose process is gone here",
    )
    s.set_defaults(func=cmd_reconcile)

    b = sub.add_parser("budget", parents=[common], help="set, change or remove budgets")
    bsub = b.add_subparsers(dest="budget_command", metavar="COMMAND")
    b.set_defaults(func=lambda args: (b.print_help(), 2)[1])
    s = bsub.add_parser(
        "set",
        parents=[common],
        help="set, raise or lower a source's budget (ε_max, δ)",
        description="Set a budget before or after first use: on a built-in name (digits), a "
        "declared source name (patients), or a CSV/Parquet file, whose rows are then recognised "
        "in any subset or copy. Every change is a chained entry.",
    )
    s.add_argument("source", help="built-in or declared source name, a known source, or a CSV/Parquet path")
    s.add_argument("--epsilon", type=_number("--epsilon"), required=True)
    s.add_argument("--delta", type=_number("--delta"), required=True)
    s.add_argument("--unit", **unit)
    s.add_argument("--population", **population)
    s.add_argument(
        "--source",
        dest="declare",
        default=None,
        metavar="NAME",
        help="for a file: declare it as source NAME (as dataset.source=NAME does)",
    )
    s.add_argument("--id-column", default=None, help="for a file: the column that identifies a person")
    s.add_argument(
        "--force",
        action="store_true",
        help="record a budget below what is already spent (every further run is then refused)",
    )
    s.set_defaults(func=cmd_budget_set)
    s = bsub.add_parser("remove", parents=[common], help="remove a budget: runs are tracked, no longer refused")
    s.add_argument("source", help="source name, key or fingerprint prefix")
    s.add_argument("--unit", **unit)
    s.add_argument("--population", **population)
    s.set_defaults(func=cmd_budget_remove)

    from privtrain.ledger import consent_cli

    consent_cli.register(sub, common, _open)
    s = sub.add_parser(
        "verify", parents=[common], help="check the file, the chain, its signature and anchors (exit 1 on tampering)"
    )
    s.add_argument(
        "--head",
        default=None,
        metavar="COUNT:HASH",
        help="a head printed by `ledger head` and kept outside the file: prove the ledger extends it",
    )
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("head", parents=[common], help="print COUNT:HASH of the chain's head, to publish elsewhere")
    s.set_defaults(func=cmd_head)
    s = sub.add_parser(
        "id", parents=[common], help="print the ledger's id (the hash of its first entry), for a policy's `ledger:` pin"
    )
    s.set_defaults(func=cmd_id)

    s = sub.add_parser(
        "accept-damage",
        parents=[common],
        help="record that a ledger's damage is accepted, so it admits runs again; what it counts as "
        "spent is never lowered",
    )
    s.add_argument("--reason", required=True, help="why (recorded in the chain)")
    s.add_argument(
        "--exhaust-budgets",
        action="store_true",
        help="when edited or lost entries cannot be bounded by what this machine last verified, count "
        "every budget as spent (ε=inf) instead of refusing",
    )
    s.set_defaults(func=cmd_accept_damage)

    s = sub.add_parser("export", parents=[common], help="all entries as JSON or CSV")
    s.add_argument("--format", choices=("json", "csv"), default="json")
    s.add_argument("--output", help="file to write (default: stdout)")
    s.add_argument("--source", help="only this source")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("plot", parents=[common], help="PNG of a source's budget burned down over runs")
    s.add_argument("source", help="source name, key or fingerprint prefix")
    s.add_argument("--output", help="PNG path (default: ./ledger-NAME-UNIT.png)")
    s.add_argument("--unit", **unit)
    s.add_argument("--population", **population)
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("migrate", parents=[common], help="carry a privtrain 0.1 ledger over to per-source budgets")
    s.set_defaults(func=cmd_migrate)


def main(argv: list[str] | None = None) -> int:
    """``python -m privtrain.ledger …``: the same commands without the rest of privtrain's CLI."""
    parser = argparse.ArgumentParser(prog="privtrain")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "ledger":
        argv = ["ledger", *argv]
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"privtrain: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
