"""A run's evidence: the files its ledger entries chained, version by version, and whether they still hold.

A run's commit chains the SHA-256 of every file it wrote. A later command that rewrites one of them (an
audit adds its section to the card) chains the new hash in an ``artifacts`` entry that names the version
it replaces. So the evidence is checked three ways:

- every file matches the newest hash the ledger holds for it;
- every re-recorded file names, in its entry, the version the ledger held before (the versions form one
  chain back to the run's own commit: nothing was re-signed from a file someone had edited);
- a card (``model_card.md``, ``report.md``) without the blocks later commands added
  (:mod:`privtrain.artifacts.card_sections`) is byte for byte the card its run recorded.

A command re-chains only files it wrote itself, and only after :func:`require_intact` (see
:func:`rechain`); ``privtrain verify`` and ``privtrain release`` refuse a run for which :func:`problems`
finds anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from privtrain.errors import UserError

CARDS = ("model_card.md", "report.md")  # the cards a run writes, to which later commands may add blocks
# What an audit of an earlier privtrain re-recorded without naming versions: its own outputs, and the card,
# whose text outside the audit's block is still checked against the run's commit.
_LEGACY_AUDIT = ("audit.json", "audit_roc.png", *CARDS)


@dataclass(frozen=True)
class Recorded:
    """What a run's ledger entries chained about its files.

    Attributes:
        run_id: the run.
        ledger: where the ledger is (its file, or its URL without the password).
        hashes: each file's newest recorded SHA-256.
        committed: what the run's own commit recorded.
        breaks: re-recordings that did not name the version the ledger held (one line each).
    """

    run_id: str
    ledger: str
    hashes: dict[str, str]
    committed: dict[str, str]
    breaks: tuple[str, ...] = field(default=())


def recorded(book, run_id: str) -> Recorded:
    """Walk the run's committed and ``artifacts`` entries in chain order.

    Raises:
        UserError: the ledger holds no committed entry of the run.
    """
    hashes: dict[str, str] = {}
    committed: dict[str, str] | None = None
    breaks = []
    for e in book.entries():
        if e.run_id != run_id:
            continue
        if e.status == "committed":
            committed = {**(committed or {}), **e.artifacts}
            hashes.update(e.artifacts)
        elif e.status == "artifacts" and committed is not None:
            legacy = "replaces" not in e.detail  # written before entries named the versions they replace
            replaces = e.detail.get("replaces") or {}
            for name in sorted(e.artifacts):
                if name in hashes and replaces.get(name) != hashes[name] and not (legacy and name in _LEGACY_AUDIT):
                    breaks.append(
                        f"{name} was re-recorded by entry {e.id} ({e.detail.get('why', 'artifacts')}) "
                        "without naming the version the ledger held"
                    )
            hashes.update(e.artifacts)
    if committed is None:
        raise UserError(
            f"run {run_id} has no committed entry in the ledger {book.location}; pass its ledger with --ledger PATH."
        )
    return Recorded(run_id, str(book.location), hashes, committed, tuple(breaks))


def problems(run_dir: Path, rec: Recorded) -> list[str]:
    """Everything about ``run_dir`` that differs from what its ledger recorded, one phrase per file."""
    from privtrain.artifacts.card_sections import body
    from privtrain.artifacts.run_dir import sha256_file

    out = []
    for name, digest in sorted(rec.hashes.items()):
        file = Path(run_dir) / name
        if not file.is_file():
            out.append(f"{name} (missing)")
        elif sha256_file(file) != digest:
            out.append(f"{name} (edited since the ledger recorded it)")
        elif name in CARDS and name in rec.committed and digest != rec.committed[name]:
            text = file.read_bytes().decode("utf-8", errors="surrogateescape")
            own = hashlib.sha256(body(text).encode("utf-8", errors="surrogateescape")).hexdigest()
            if own != rec.committed[name]:
                out.append(f"{name} (its text outside the audit's section differs from what run {rec.run_id} recorded)")
    out.extend(f"{b}" for b in rec.breaks)
    return out


def summary(run_dir: Path, rec: Recorded, found: list[str]) -> str:
    """One line: how many of the run's files differ from its ledger, and which."""
    return (
        f"run {rec.run_id}: {len(found)} of {len(rec.hashes)} recorded files differ from what the ledger "
        f"{rec.ledger} recorded: {'; '.join(found)}"
    )


def require_intact(run_dir: Path, rec: Recorded, *, command: str) -> None:
    """Refuse (one line) to act on a run whose files differ from what its ledger recorded.

    Raises:
        UserError: naming the files and the fix; the command has written and charged nothing.
    """
    found = problems(run_dir, rec)
    if found:
        raise UserError(
            f"{command} refused: {summary(run_dir, rec, found)}. Restore the run's files as the "
            f"run wrote them (privtrain verify {run_dir}), or run it again; nothing was written or "
            "charged."
        )


def rechain(book, run_dir: Path, rec: Recorded, written: list[str], *, why: str, detail: dict | None = None):
    """Chain the new hashes of files this command wrote itself, each naming the version it replaces.

    ``detail`` adds facts to the entry (a key rotation names its key ids).

    ``rec`` is what :func:`require_intact` checked before the command wrote anything: if another command
    re-recorded a file in between, this entry names an older version and ``privtrain verify`` reports it.

    Raises:
        UserError: a card written here no longer gives back its run's card without the added blocks
            (it was edited while the command ran): nothing is recorded.
    """
    from privtrain.artifacts.run_dir import hash_artifacts

    run_dir = Path(run_dir)
    hashes = hash_artifacts([run_dir / n for n in written], run_dir)
    after = Recorded(rec.run_id, rec.ledger, {**rec.hashes, **hashes}, rec.committed, rec.breaks)
    found = [p for p in problems(run_dir, after) if p.split(" ", 1)[0] in hashes]
    if found:
        raise UserError(
            f"{why}: {'; '.join(found)}: a file changed while privtrain wrote it; nothing was "
            "recorded. Restore the run's files and run the command again."
        )
    replaces = {n: rec.hashes[n] for n in hashes if n in rec.hashes}
    return book.record_artifacts(rec.run_id, hashes, why=why, replaces=replaces, detail=detail)
