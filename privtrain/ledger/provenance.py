"""Who, when and which code: the stamp every ledger entry carries."""

from __future__ import annotations

import getpass
import subprocess
import sys
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no login name (e.g. a container with an unknown uid)
        return None


@lru_cache(maxsize=1)
def version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as _version

        return _version("privtrain")
    except PackageNotFoundError:
        return getattr(sys.modules.get("privtrain"), "__version__", None)


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the privtrain source checkout, or None (installed package, no git, no commits)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    if out.returncode != 0 or len(sha) != 40:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return sha + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def stamp() -> dict:
    return {
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "user": _user(),
        "version": version(),
        "git_commit": git_commit(),
    }
