"""``privtrain approve RUN_DIR --as NAME``: a person's sign-off on a run, chained in its ledger.

An approval is a ledger entry (status ``approval``) that binds:

- **who**: the approver's identity as the ledger sees it. On an SQLite file that is the login name every
  entry is stamped with (:func:`getpass.getuser`: ``$LOGNAME``, ``$USER``, else the uid's name); on a
  PostgreSQL ledger it is the database role the server authenticated (``current_user``). ``--as NAME``
  must name that identity: a person states who they are, and the ledger checks it against what it stamps;
- **what**: the SHA-256 of every file of the run, as its ledger entries chained them when the approval was
  given (:mod:`privtrain.artifacts.evidence`), and the hash of the policy in force;
- **why**: an optional comment.

``privtrain release`` counts an approval only while both still hold: files re-chained since (an audit that
added its section to the card) or a changed policy void it. Decisions (docs/governance/approvals.md):
the person who launched the run cannot approve it (an approval is a second person's review); the same
person approving the same files twice is refused, and would count once anyway.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from privtrain.errors import UserError, require

STATUS = "approval"


@dataclass(frozen=True)
class Approval:
    """One chained approval.

    Attributes:
        approver: the identity the ledger checked (login name, or PostgreSQL role).
        identity: how it was established: ``login`` or ``postgresql role``.
        artifacts: the SHA-256 of the run's file hashes the approval covers (:func:`files_digest`).
        policy: the SHA-256 of the policy in force when approved (None: no policy).
        entry, time, comment: the ledger entry, when, and the approver's comment.
    """

    approver: str
    identity: str
    artifacts: str
    policy: str | None
    entry: int
    time: str
    comment: str
    login: str | None = None  # the login name the entry was stamped with (the role's user, on PostgreSQL)

    def to_dict(self) -> dict:
        return {
            "approver": self.approver,
            "identity": self.identity,
            "entry": self.entry,
            "time": self.time,
            "comment": self.comment,
        }


def files_digest(hashes: dict[str, str]) -> str:
    """One SHA-256 over a run's {file: sha256}: what an approval is bound to."""
    return hashlib.sha256(json.dumps(dict(sorted(hashes.items())), sort_keys=True).encode()).hexdigest()


def who(book) -> tuple[str, str]:
    """(identity, how it was established) of whoever writes to ``book`` now.

    Raises:
        UserError: no login name can be found (a container with an unnamed uid) on a file ledger.
    """
    role = book.role()
    if role:
        return role, "postgresql role"
    login = _login()
    if login is None:
        raise UserError(
            "privtrain approve refused: this process has no login name ($LOGNAME, $USER); an approval "
            "needs an identity: run it as a named user, or use a PostgreSQL ledger with roles."
        )
    return login, "login"


def _login() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - an unnamed uid; the ledger stamps None too
        return None


def launched_by(book, run_id: str) -> set[str]:
    """The login names stamped on the run's own entries (on PostgreSQL too: a run's entries record the login,
    not the role; see docs/governance/approvals.md)."""
    return {e.user for e in book.entries() if e.run_id == run_id and e.status in ("reserved", "committed") and e.user}


def recorded(book, run_id: str) -> list[Approval]:
    """Every approval the ledger chained for ``run_id``, in chain order."""
    return [
        Approval(
            d["approver"], d["identity"], d["artifacts"], d.get("policy"), e.id, e.time, d.get("comment", ""), e.user
        )
        for e in book.decisions(STATUS, run_id)
        for d in [e.detail]
    ]


def counted(book, run_id: str, hashes: dict[str, str], policy_sha: str | None) -> tuple[list[Approval], list[str]]:
    """The approvals that count now, one per approver (the first), and why each other one does not.

    An approval counts while the run's files are the ones it covered and the policy is the one it was given
    under; never one by the run's own launcher, nor one whose approver is not the login the entry was
    stamped with (chained past ``approve``, in someone else's name).
    """
    digest, launchers = files_digest(hashes), launched_by(book, run_id)
    valid: dict[str, Approval] = {}
    void = []
    for a in recorded(book, run_id):
        if a.approver in launchers or a.login in launchers:
            void.append(f"{a.approver} (entry {a.entry}) launched the run")
        elif a.identity == "login" and a.login != a.approver:  # written past `approve`, in another's name
            void.append(f"{a.approver} (entry {a.entry}) was recorded by login {a.login}")
        elif a.artifacts != digest:
            void.append(f"{a.approver} (entry {a.entry}) approved other files (re-chained since)")
        elif a.policy != policy_sha:
            void.append(f"{a.approver} (entry {a.entry}) approved under another policy")
        else:
            valid.setdefault(a.approver, a)
    return list(valid.values()), void


def approve(run_dir: Path, name: str, *, comment: str = "", ledger_path: str | None = None):
    """Chain an approval of the run in ``run_dir`` by ``name`` (who must be the caller's identity).

    Returns:
        The ledger entry.

    Raises:
        UserError: the run's files differ from its ledger, ``name`` is not the caller's identity, the caller
            launched the run, or already approved these files under this policy (nothing is written).
    """
    from privtrain.artifacts import evidence
    from privtrain.artifacts.verify import run_evidence

    run_dir = Path(run_dir)
    require(run_dir.is_dir(), f"run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    book, rec = run_evidence(run_dir, ledger_path)
    evidence.require_intact(run_dir, rec, command="privtrain approve")
    require(bool(name and name.strip()), "privtrain approve needs --as NAME: who approves.")
    identity, how = who(book)
    require(
        name == identity,
        f"privtrain approve refused: --as {name!r} is not you: this ledger identifies you by "
        f"your {how} {identity!r}; approve as yourself (--as {identity}); nothing was written.",
    )
    launchers = launched_by(book, rec.run_id)
    login = _login()
    require(
        identity not in launchers and login not in launchers,
        f"privtrain approve refused: {identity if identity in launchers else login} launched run {rec.run_id}, and an approval is a second person's "
        "review; ask another approver; nothing was written.",
    )
    policy_sha = (book.policy() or {}).get("sha256")
    digest = files_digest(rec.hashes)
    again = [
        a
        for a in recorded(book, rec.run_id)
        if a.approver == identity and a.artifacts == digest and a.policy == policy_sha
    ]
    require(
        not again,
        f"privtrain approve refused: {identity} already approved these files of run {rec.run_id} "
        f"under this policy (entry {again[0].entry if again else ''}); an approver counts once; nothing was written.",
    )
    return book.record_decision(
        rec.run_id,
        STATUS,
        {
            "approver": identity,
            "identity": how,
            "artifacts": digest,
            "files": dict(sorted(rec.hashes.items())),
            "policy": policy_sha,
            "comment": comment.strip(),
        },
    )


def _cmd(args: argparse.Namespace) -> int:
    entry = approve(Path(args.run_dir), args.name, comment=args.comment or "", ledger_path=args.ledger)
    print(
        f"approved run {entry.run_id} as {entry.detail['approver']} ({entry.detail['identity']}): ledger entry "
        f"{entry.id}, bound to {len(entry.detail['files'])} file hashes and policy "
        f"{(entry.detail['policy'] or 'none')[:12]}"
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "approve",
        help="approve a run (a chained sign-off bound to its files and policy)",
        description="Record an approval of a finished run as a chained ledger entry, bound "
        "to the hashes of its files and the policy in force. --as must name you as the "
        "ledger identifies you (your login name, or your PostgreSQL role).",
    )
    p.add_argument("run_dir", help="output directory of a finished run")
    p.add_argument("--as", dest="name", required=True, metavar="NAME", help="your identity (checked)")
    p.add_argument("--comment", default="", help="why you approve, or what you reviewed")
    p.add_argument("--ledger", default=None, metavar="PATH", help="the run's ledger (default: the one it used)")
    p.set_defaults(func=_cmd)
