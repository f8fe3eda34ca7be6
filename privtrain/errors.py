"""Errors a user can fix.

A :class:`UserError` is bad input: the CLI prints its message on one line and
exits with code 2, and nothing is charged to the ledger. Any other exception is
a bug and keeps its traceback.
"""

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """Bad input. The message names the field and the fix, on one line.

    A subclass with ``multiline = True`` (the PII gate's refusal) keeps its line breaks: one line, then one
    line per item the user must fix.
    """

    exit_code = 2
    multiline = False


class BudgetExceeded(UserError):
    """A planned run does not fit the dataset's remaining privacy budget."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)


# What the filesystem says about a path the user gave (or a folder they run in): their environment, not a bug.
USER_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EEXIST,
    }
)


def path_error(exc: OSError, what: str) -> UserError:
    """One line for a filesystem error on ``what`` (a setting and its path, or a command's folder)."""
    name = str(exc.filename) if exc.filename is not None else ""
    shown = name if len(name) <= 80 else f"{name[:40]}…{name[-30:]}, {len(name)} characters"
    reason = exc.strerror or type(exc).__name__
    fix: dict[int | None, str] = {  # exc.errno may be None: no fix of its own
        errno.ENAMETOOLONG: "use a shorter path",
        errno.EROFS: "run from (or write to) a writable folder",
        errno.EACCES: "fix its permissions or choose another path",
        errno.EPERM: "fix its permissions or choose another path",
        errno.ENOSPC: "free some disk space",
        errno.EDQUOT: "free some disk space",
    }
    return UserError(f"{what}: {reason}{f' ({shown})' if shown else ''}; {fix.get(exc.errno, 'check the path')}.")


@contextmanager
def user_paths(what: str, errnos: frozenset[int] = USER_ERRNOS) -> Iterator[None]:
    """Turn an :class:`OSError` raised on a path the user gave into one :class:`UserError` line (a name too
    long, a read-only or unreadable folder, ...); any other error passes through."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in errnos:
            raise
        raise path_error(exc, what) from None


# The errors no code of ours causes: a place the user chose that cannot hold what the command writes.
ENVIRONMENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def environment_errors(what: str):
    """The CLI's last net: a read-only folder, a name too long, no permission or a full disk is one line (and
    exit 2), not a traceback. Code that reads a path the user named checks it earlier with :func:`user_paths`,
    before any charge; this net says nothing about charges."""
    return user_paths(what, ENVIRONMENT_ERRNOS)
