"""``privtrain verify RUN_DIR``: do a run's files still match the hashes its ledger entries chained?

A run's commit records the SHA-256 of every file it wrote; an audit that later rewrites the card records
the new hashes (``artifacts`` entries), each naming the version it replaces, and the card without the
audit's section must still be the card the run recorded (:mod:`privtrain.artifacts.evidence`). Any other
edit, a missing file, a file swapped in from another run, or a re-recording that skipped a version is
reported on one line (exit 1), so a checkpoint is trusted only after its hash matches the ledger.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from privtrain.errors import UserError


def run_evidence(run_dir: Path, ledger_path: str | None = None):
    """(the ledger, :class:`~privtrain.artifacts.evidence.Recorded`) of a finished run in ``run_dir``.

    Raises:
        UserError: not a run directory, or its ledger has no committed entry for it.
    """
    from privtrain import ledger
    from privtrain.artifacts import evidence
    from privtrain.artifacts.record import RunRecord

    record = RunRecord.read(run_dir)
    book = ledger.open(ledger_path or record.ledger["path"], create=False)
    return book, evidence.recorded(book, record.run_id)


def recorded_hashes(run_dir: Path, ledger_path: str | None = None) -> tuple[str, dict[str, str], str]:
    """(run id, {relative path: newest recorded sha256}, ledger path) of a finished run.

    Raises:
        UserError: not a run directory, or its ledger has no committed entry for it.
    """
    book, rec = run_evidence(run_dir, ledger_path)
    return rec.run_id, rec.hashes, str(book.path)


def _cmd(args: argparse.Namespace) -> int:
    from privtrain.artifacts import evidence

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    _, rec = run_evidence(run_dir, args.ledger)
    found = evidence.problems(run_dir, rec)
    if found:
        print(evidence.summary(run_dir, rec, found))
        return 1
    print(f"run {rec.run_id}: all {len(rec.hashes)} files match the hashes in the ledger {rec.ledger}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check a run's files against the hashes its ledger entries chained",
        description="Check every file a run wrote against the SHA-256 its ledger entry "
        "recorded (and later audits). One line; exit 1 on any mismatch.",
    )
    p.add_argument("run_dir", help="output directory of a finished run")
    p.add_argument("--ledger", default=None, metavar="PATH", help="the run's ledger (default: the one it used)")
    p.set_defaults(func=_cmd)
