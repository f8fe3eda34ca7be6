"""A checkpoint belongs to the ledger that charged it: a resume continues there, or nowhere.

A resumed run is charged only its new steps, while the model's guarantee covers every step since the first.
That is right only when the earlier steps are already charged to the same ledger. A resume into another
ledger (a throwaway file, a colleague's) would leave the earlier steps out of that ledger's budget: the
issue that prompted this module measured a resume charged 1.045 where the model's own guarantee is ε = 3.179.

So a checkpoint carries the identity of the ledger that charged its run (the hash of the ledger's first
entry, :meth:`privtrain.ledger.Ledger.identity`) and its run id, and a resume is refused, in one line and
before anything is charged, unless the resuming run's ledger is that ledger and holds the checkpoint's
commit with the checkpoint's hash. Refusing was chosen over charging the whole history again: the history
is already charged where it happened, and charging it twice would misstate that ledger's spend.
"""

from __future__ import annotations

from pathlib import Path

from privtrain.errors import UserError


def stamp(ledger_path: str | None, run_id: str) -> dict:
    """What a checkpoint records about the ledger its run is charged to: ``{"id", "run_id"}``."""
    from privtrain import ledger

    return {"id": ledger.open(ledger_path, create=False).identity(), "run_id": run_id}


def require_charged_here(file: Path, ledger_path: str | None) -> None:
    """Before a checkpoint is loaded: this run's ledger holds its run's commit, with this very file's hash.

    Raises:
        UserError: no run beside the checkpoint, the run was charged to another ledger, or the file differs
            from what was recorded (one line; nothing is charged).
    """
    from privtrain import ledger
    from privtrain.artifacts import evidence
    from privtrain.artifacts.record import RunRecord
    from privtrain.artifacts.run_dir import sha256_file

    try:
        record = RunRecord.read(file.parent)
    except UserError as exc:
        raise UserError(
            f"resume: {file} must be the checkpoint.pt of a privtrain run whose ledger recorded it "
            f"({' '.join(str(exc).split())})"
        ) from None
    book = ledger.open(ledger_path)
    try:
        rec = evidence.recorded(book, record.run_id)
    except UserError:
        raise UserError(
            f"resume: {file} was charged to another ledger ({record.ledger.get('path')}) than this "
            f"run's ({book.location}), which has no record of run {record.run_id}: the resumed model's "
            "guarantee covers its earlier steps, which only that ledger counts. Resume with "
            f"ledger.path={record.ledger.get('path')}, or train from scratch; nothing was charged."
        ) from None
    if rec.hashes.get(file.name) != sha256_file(file):
        raise UserError(
            f"resume: {file} does not match the hash its run's ledger entry recorded ({book.location}): "
            "it was edited or replaced; resume from an unmodified run."
        )


def require_same_ledger(file: Path, meta: dict, ledger_path: str | None) -> None:
    """After loading: the ledger the checkpoint names is this run's (a copy of the file shares the identity,
    which is why :func:`require_charged_here` also asks for the commit).

    Raises:
        UserError: the checkpoint names another ledger.
    """
    from privtrain import ledger

    named = (meta.get("ledger") or {}).get("id")
    if named is None:  # checkpoints written before checkpoints named their ledger: the commit check stands alone
        return
    here = ledger.open(ledger_path).identity()
    if named != here:
        raise UserError(
            f"resume: {file} was charged to ledger {named[:12]}, not to this run's ledger "
            f"{str(here)[:12]}: resume into the ledger that charged it, or train from scratch; "
            "nothing was charged."
        )
