"""A real PostgreSQL server for the tests and the benchmark, started and stopped by them.

Binaries, in order: ``$PRIVTRAIN_TEST_PG_BIN`` (a folder with initdb, pg_ctl, postgres); the ones bundled
in the ``pgserver`` wheel (the ``test`` extra installs it: nothing else to install); initdb on the PATH;
Debian's ``/usr/lib/postgresql/*/bin``. Or ``$PRIVTRAIN_TEST_PG_URL`` names a running server whose role may
create databases, and nothing is started.

PostgreSQL refuses to run as root. As root (CI, containers) the server runs as an unprivileged user
(``$PRIVTRAIN_TEST_PG_USER``, default ``nobody``): its data folder is made for and owned by that user,
and when the user cannot reach the binaries where they are installed (a private parent folder) they are
copied into that folder first. (pgserver's own ``get_server`` would instead add a system user and widen
the permissions of every parent folder; the tests do neither.)

The server listens on 127.0.0.1 on a free port, with trust authentication, and on a Unix socket in its
own folder only.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

SUPERUSER = "postgres"


class Unavailable(RuntimeError):
    """No PostgreSQL binaries were found (or the server could not start)."""


def find_binaries() -> Path:
    candidates = []
    if os.environ.get("PRIVTRAIN_TEST_PG_BIN"):
        candidates.append(Path(os.environ["PRIVTRAIN_TEST_PG_BIN"]))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise Unavailable(
        "no PostgreSQL binaries: install the test extra (pgserver), or Debian's postgresql, "
        "or set PRIVTRAIN_TEST_PG_BIN or PRIVTRAIN_TEST_PG_URL"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One PostgreSQL server in a temporary folder; :meth:`database` makes a fresh database per test."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable  # False: fsync off (tests); True: PostgreSQL's defaults (benchmarks)
        self.root: Path | None = None
        self.port: int | None = None
        self.admin_url = os.environ.get("PRIVTRAIN_TEST_PG_URL")
        self._run_as = None

    # --- start and stop ---
    def start(self) -> Server:
        if self.admin_url:
            return self
        _exit_cleanly_on_sigterm()
        bin_dir = find_binaries()
        self.root = Path(tempfile.mkdtemp(prefix="privtrain-pg-"))
        if os.geteuid() == 0:
            self._run_as = os.environ.get("PRIVTRAIN_TEST_PG_USER", "nobody")
            shutil.chown(self.root, user=self._run_as)
            if not self._usable(bin_dir):
                bin_dir = self._copy_install(bin_dir)
        self.bin = bin_dir
        data = self.root / "data"
        self._pg("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = ["-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.root}", "-c max_connections=200"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        for attempt in range(3):
            self.port = _free_port()
            try:
                self._pg(
                    "pg_ctl",
                    "-D",
                    str(data),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.root / "log"),
                    "-o",
                    " ".join([*options, f"-c port={self.port}"]),
                    "start",
                )
                break
            except Unavailable:
                if attempt == 2:
                    raise
        self.admin_url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._pg("pg_ctl", "-D", str(self.root / "data"), "-w", "-t", "60", "-m", "fast", "stop")
        except Unavailable:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _pg(self, program: str, *args: str) -> str:
        out = subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            user=self._run_as,
            cwd=self.root,
        )
        if out.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise Unavailable(f"{program} failed ({out.returncode}): {out.stderr.strip()[-2000:]}\n{tail}")
        return out.stdout

    def _usable(self, bin_dir: Path) -> bool:
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, user=self._run_as)
        return out.returncode == 0

    def _copy_install(self, bin_dir: Path) -> Path:
        """The binaries (and their lib/ and share/) copied where the unprivileged user can reach them."""
        install = self.root / "install"
        for part in ("lib", "share"):
            if (bin_dir.parent / part).is_dir():
                shutil.copytree(bin_dir.parent / part, install / part, symlinks=True)
        (install / "bin").mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres"):
            shutil.copy2(bin_dir / name, install / "bin" / name)
        for path in [install, *install.rglob("*")]:
            os.chmod(path, os.stat(path).st_mode | 0o055 | (0o011 if path.is_dir() else 0))
        return install / "bin"

    # --- databases ---
    def database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str, user: str = SUPERUSER, password: str | None = None) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        scheme, rest = base.split("://", 1)
        host = rest.split("@", 1)[-1]
        auth = user + (f":{password}" if password else "")
        return f"{scheme}://{auth}@{host}/{database}"

    def drop(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1].split("?")[0]
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass


def _exit_cleanly_on_sigterm() -> None:
    """A SIGTERM (a CI timeout, ``kill``) raises SystemExit, so ``finally`` blocks stop the server."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_exit)


def _raise_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)
