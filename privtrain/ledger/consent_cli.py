"""``privtrain ledger provenance set|show``: a source's declared provenance and consent, as recorded decisions."""

from __future__ import annotations


def cmd_set(args) -> int:
    led = args.open_ledger(args, create=True)
    prov = led.set_provenance(
        args.source,
        reason=args.reason,
        collected_by=args.collected_by,
        basis=args.basis,
        purposes=args.purposes,
        retain_until=args.retain_until,
        regions=args.regions,
    )
    print(f"provenance of {args.source} recorded in entry {prov.entry}: {prov.describe()}")
    return 0


def cmd_show(args) -> int:
    from privtrain.errors import UserError

    led = args.open_ledger(args)
    key = led.resolve(args.source)
    prov = led.provenance(key)
    if prov is None:
        raise UserError(
            f"source {args.source!r} has no declared provenance; record it: privtrain ledger provenance "
            f"set {args.source} --collected-by WHO --basis TEXT --purposes a,b --reason TEXT"
        )
    print(
        "\n".join(
            lines(led.name(key) or key[:12], prov, history=[e for e in led.entries(key) if e.status == "provenance"])
        )
    )
    return 0


def lines(name: str, prov, history=()) -> list[str]:
    """``ledger show`` / ``provenance show``: the facts in force, and (for show) every recorded decision."""
    out = [f"provenance of {name}: {prov.describe()} (entry {prov.entry}, {prov.time}, by {prov.user or '?'})"]
    for e in history:
        d = e.detail
        out.append(
            f"  entry {e.id} {e.time} by {e.user or '?'}: {d.get('reason')!r}"
            + (
                f" (replaces sha256 {d['replaces'][:12]}, entry {d.get('replaces_entry')})"
                if d.get("replaces")
                else " (first declaration)"
            )
        )
    return out


def register(sub, common, open_ledger) -> None:
    """``ledger provenance`` under the ``ledger`` command's subparsers; ``open_ledger(args, create=...)`` opens the
    ledger the command names (``privtrain.ledger.cli`` passes its own, so this module does not import it)."""
    p = sub.add_parser("provenance", parents=[common], help="declare or show a source's provenance and consent")
    psub = p.add_subparsers(dest="provenance_command", metavar="COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    s = psub.add_parser(
        "set",
        parents=[common],
        help="declare or change who collected a source, on what basis, "
        "for which purposes, until when and where (a chained, recorded decision)",
        epilog="example: privtrain ledger provenance set patients --collected-by 'St Mary clinic' "
        "--basis 'consent form v3' --purposes diagnosis,research --retain-until 2027-06-30 "
        "--regions eu-west,eu-central --reason 'DPIA 2026-14'",
    )
    s.add_argument("source", help="built-in or declared source name, or a known source's key or fingerprint prefix")
    s.add_argument("--collected-by", default=None, help="who collected the data")
    s.add_argument("--basis", default=None, help="the legal basis or consent scope, in words")
    s.add_argument("--purposes", default=None, help="comma-separated purposes the data may be used for (run.purpose)")
    s.add_argument("--retain-until", default=None, help="ISO date after which no run may start")
    s.add_argument("--regions", default=None, help="comma-separated regions it may be processed in (site.region)")
    s.add_argument("--reason", required=True, help="why (recorded with who decided)")
    s.set_defaults(func=cmd_set, open_ledger=open_ledger)
    s = psub.add_parser("show", parents=[common], help="a source's provenance and every recorded change")
    s.add_argument("source", help="source name, key or fingerprint prefix")
    s.set_defaults(func=cmd_show, open_ledger=open_ledger)
