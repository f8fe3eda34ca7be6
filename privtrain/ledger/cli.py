"""`privtrain ledger …`: read and administer the privacy ledger.

Imports nothing heavy at start-up (no torch, flwr or sdv; matplotlib only in
`plot`; dp-accounting only when a composition is not cached).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from privtrain.errors import UserError


def _open(args):
    from privtrain import ledger

    # --path may come before the subcommand (ledger --path F show) or after it (ledger show --path F)
    return ledger.open(getattr(args, "path", None) or getattr(args, "ledger_path", None))


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number for {name}, got {text!r}") from None
    return parse


def cmd_show(args) -> int:
    from privtrain.ledger.render import render_show

    led = _open(args)
    print(render_show(led.datasets(), str(led.path)))
    return 0


def cmd_runs(args) -> int:
    from privtrain.ledger.render import render_runs

    led = _open(args)
    fp = led.resolve(args.dataset)
    entries = led.entries(fp, args.unit)
    name = led._name(fp)
    print(render_runs(entries, f"{name or '?'} ({fp}){'' if args.unit is None else f', unit={args.unit}'}"))
    return 0


def cmd_budget_set(args) -> int:
    led = _open(args)
    budget = led.set_budget(args.dataset, args.unit, args.epsilon, args.delta)
    fp = led.resolve(args.dataset)
    spent = led.spent(fp, args.unit)
    print(f"budget for {led._name(fp) or '?'} ({fp[:12]}), unit={args.unit}: ε={budget.epsilon:g} at "
          f"δ={budget.delta:g} (entry {budget.entry_id}); spent ε={spent:.4g}, "
          f"remaining ε={max(0.0, budget.epsilon - spent):.4g}")
    return 0


def cmd_verify(args) -> int:
    report = _open(args).verify()
    print(report.message)
    return 0 if report.ok else 1


def cmd_export(args) -> int:
    from privtrain.ledger.render import export_csv, export_json

    led = _open(args)
    entries = led.entries(args.dataset) if args.dataset else led.entries()
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
    fp = led.resolve(args.dataset)
    summary = next((s for s in led.datasets() if s.fingerprint == fp and s.unit == args.unit), None)
    if summary is None:
        raise UserError(f"dataset {args.dataset!r} has no entries for unit={args.unit}; try --unit client.")
    output = Path(args.output or f"ledger-{(summary.name or fp[:12])}-{args.unit}.png")
    plot(summary, led._runs(fp, args.unit), output)
    print(f"wrote {output}")
    return 0


def register(subparsers) -> None:
    """Add the ``ledger`` command (and its subcommands) to an argparse subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--path", default=argparse.SUPPRESS,
                        help="ledger file (default: $PRIVTRAIN_LEDGER, else ./.privtrain/ledger.db)")
    p = subparsers.add_parser("ledger", help="read and administer the privacy ledger",
                              description="Read and administer the privacy ledger.")
    p.add_argument("--path", dest="ledger_path", default=None,
                   help="ledger file (default: $PRIVTRAIN_LEDGER, else ./.privtrain/ledger.db)")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    sub = p.add_subparsers(dest="ledger_command", metavar="COMMAND")
    unit = dict(choices=("example", "client"), default="example", help="unit of privacy (default: example)")

    s = sub.add_parser("show", parents=[common], help="budget, spent and remaining per dataset and unit")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("runs", parents=[common], help="the entries of one dataset")
    s.add_argument("dataset", help="name, fingerprint or fingerprint prefix")
    s.add_argument("--unit", choices=("example", "client"), default=None)
    s.set_defaults(func=cmd_runs)

    b = sub.add_parser("budget", parents=[common], help="manage budgets")
    bsub = b.add_subparsers(dest="budget_command", metavar="COMMAND")
    b.set_defaults(func=lambda args: (b.print_help(), 2)[1])
    s = bsub.add_parser("set", parents=[common], help="set a dataset's budget (ε_max, δ)")
    s.add_argument("dataset", help="name, fingerprint or fingerprint prefix")
    s.add_argument("--epsilon", type=_positive("--epsilon"), required=True)
    s.add_argument("--delta", type=_positive("--delta"), required=True)
    s.add_argument("--unit", **unit)
    s.set_defaults(func=cmd_budget_set)

    s = sub.add_parser("verify", parents=[common], help="check the hash chain (exit 1 on tampering)")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("export", parents=[common], help="all entries as JSON or CSV")
    s.add_argument("--format", choices=("json", "csv"), default="json")
    s.add_argument("--output", help="file to write (default: stdout)")
    s.add_argument("--dataset", help="only this dataset")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("plot", parents=[common], help="PNG of a dataset's budget burned down over runs")
    s.add_argument("dataset", help="name, fingerprint or fingerprint prefix")
    s.add_argument("--output", help="PNG path (default: ./ledger-NAME-UNIT.png)")
    s.add_argument("--unit", **unit)
    s.set_defaults(func=cmd_plot)


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
        print(f"privtrain: error: {exc}", file=sys.stderr)
        return exc.exit_code
