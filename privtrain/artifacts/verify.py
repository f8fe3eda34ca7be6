"""``privtrain verify RUN_DIR``: do a run's files still match the hashes its ledger entries chained?

A run's commit records the SHA-256 of every file it wrote; an audit that later rewrites the card records
the new hashes (``artifacts`` entries). Any other edit, a missing file, or a file swapped in from another
run is reported, so a checkpoint is trusted only after its hash matches the ledger.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from privtrain.errors import UserError


def recorded_hashes(run_dir: Path, ledger_path: str | None = None) -> tuple[str, dict[str, str], str]:
    """(run id, {relative path: newest recorded sha256}, ledger path) of a finished run.

    Raises:
        UserError: not a run directory, or its ledger has no committed entry for it.
    """
    from privtrain import ledger
    from privtrain.artifacts.record import RunRecord

    record = RunRecord.read(run_dir)
    book = ledger.open(ledger_path or record.ledger["path"], create=False)
    hashes: dict[str, str] = {}
    for e in book.entries():
        if e.run_id == record.run_id and e.status in ("committed", "artifacts"):
            hashes.update(e.artifacts)
    if not hashes:
        raise UserError(f"run {record.run_id} has no committed entry in the ledger {book.path}; pass its ledger with "
                        "--ledger PATH.")
    return record.run_id, hashes, str(book.path)


def problems(run_dir: Path, hashes: dict[str, str]) -> list[str]:
    from privtrain.artifacts.run_dir import sha256_file

    out = []
    for name, digest in sorted(hashes.items()):
        file = run_dir / name
        if not file.is_file():
            out.append(f"{name}: missing")
        elif sha256_file(file) != digest:
            out.append(f"{name}: edited since the ledger recorded it")
    return out


def _cmd(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    run_id, hashes, path = recorded_hashes(run_dir, args.ledger)
    found = problems(run_dir, hashes)
    for line in found:
        print(f"MISMATCH {line}")
    if found:
        print(f"run {run_id}: {len(found)} of {len(hashes)} files do not match the ledger {path}")
        return 1
    print(f"run {run_id}: all {len(hashes)} files match the hashes in the ledger {path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="check a run's files against the hashes its ledger entries chained",
                              description="Check every file a run wrote against the SHA-256 its ledger entry "
                              "recorded (and later audits). Exit 1 on any mismatch.")
    p.add_argument("run_dir", help="output directory of a finished run")
    p.add_argument("--ledger", default=None, metavar="PATH", help="the run's ledger (default: the one it used)")
    p.set_defaults(func=_cmd)
