"""Stale reservations: runs that reserved their budget and whose process is gone.

A run that crashes or is killed stays charged at its reservation: it touched the data. Each
reservation records where it ran (host, pid, and the process's start time, so a recycled pid is not
mistaken for it). ``privtrain ledger runs --stale`` lists the reservations whose process is gone;
``privtrain ledger reconcile`` closes them as ``failed``, still charged, as chained entries.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from privtrain.ledger.model import Entry


def identity() -> dict:
    """Where this process runs: recorded in every reservation."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a recycled pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(where: dict) -> bool | None:
    """True if the recorded process still runs, False if it is gone, None if it ran on another host."""
    if not where or where.get("host") != socket.gethostname():
        return None
    pid = int(where.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = _start_time(pid)
    return where.get("start") is None or started is None or started == where.get("start")


@dataclass(frozen=True)
class Reservation:
    """A reservation with no commit or failure after it."""

    entry: Entry
    alive: bool | None

    @property
    def state(self) -> str:
        return {True: "running", False: "stale (process gone)", None: "unknown (another host)"}[self.alive]


def open_reservations(entries) -> list[Reservation]:
    """Reservations (in chain order) that were neither committed nor marked failed."""
    closed = {e.ref for e in entries if e.status in ("committed", "failed")}
    return [
        Reservation(e, alive(e.detail.get("process", {})))
        for e in entries
        if e.status == "reserved" and e.id not in closed
    ]
