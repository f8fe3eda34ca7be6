"""The deployment engine: the same job on real Flower processes (``flower-superlink`` + ``flower-supernode``).

With ``fl.deployment.superlink=null`` privtrain starts a SuperLink and one
SuperNode per client on loopback (each SuperNode selects its partition through
``--node-config "partition-id=K num-partitions=N"``), submits the Flower App in
``privtrain/federated/app`` with ``flwr run``, follows the rounds, and stops
every process it started, whatever happens. With ``fl.deployment.superlink=HOST:PORT``
it submits to a SuperLink that is already running, whose SuperNodes data owners
started on their own machines (see docs/federated.md).

The job (composed config + privacy plans) travels as the app's ``job`` run-config
value. The ServerApp writes its history to the run's output directory, which must
therefore be on the SuperLink's machine (or a shared filesystem).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from privtrain.errors import UserError

APP_DIR = Path(__file__).resolve().parent / "app"
CONNECTION = "privtrain"


def preflight(settings) -> None:
    """Before any charge: a configured SuperLink must accept connections."""
    if settings.superlink:
        host, port = _address(settings.superlink)
        if not reachable(host, port, timeout=5.0):
            raise UserError(
                f"fl.deployment.superlink={settings.superlink} is unreachable (no connection within 5 s); "
                "start flower-superlink there, or fix the address, or set fl.deployment.superlink=null "
                "to start a local deployment."
            )


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_job(settings, dataset, model, population, central, local, output_dir) -> dict:
    """The recipe's entry point: run the job on Flower's deployment engine; return the ServerApp's history."""
    from privtrain.federated.job import planned

    job = planned(settings, dataset, model, population, central, local, output_dir)
    Path(job.output_dir).mkdir(parents=True, exist_ok=True)
    settings = job.settings
    with Deployment(settings, job.num_clients) as dep:
        dep.submit_and_wait(job)
    return json.loads((Path(job.output_dir) / "history.json").read_text())


class Deployment:
    """A local SuperLink + SuperNodes (or a remote SuperLink), and the ``flwr`` CLI pointed at it."""

    def __init__(self, settings, num_clients: int) -> None:
        self.settings = settings
        self.num_clients = num_clients
        self.procs: list[subprocess.Popen] = []
        self.tmp: Path | None = None
        self.address = settings.superlink

    # --- processes ---------------------------------------------------------------

    def __enter__(self) -> Deployment:
        self.tmp = Path(tempfile.mkdtemp(prefix="ptfl-dep-", dir="/tmp" if os.path.isdir("/tmp") else None))
        try:
            if self.address is None:
                self._start_local()
            self._write_cli_config()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop(self.procs)
        self.procs = []
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def folder(self) -> Path:
        """The deployment's temporary folder (homes, logs, the app copy), from ``__enter__`` to ``__exit__``.

        Raises:
            RuntimeError: the deployment is not entered (use it in a ``with`` statement).
        """
        if self.tmp is None:
            raise RuntimeError("the deployment is not started: use it in a with statement")
        return self.tmp

    def env(self, name: str) -> dict:
        home = self.folder / name
        home.mkdir(parents=True, exist_ok=True)
        bin_dir = str(Path(sys.executable).parent)  # flower-superexec, flwr-serverapp, flwr-clientapp by bare name
        return {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "FLWR_HOME": str(home),
            "TMPDIR": str(home),
            "RAY_TMPDIR": str(home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / args[0]), *args[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(name),
            cwd=self.folder,
            start_new_session=True,
        )  # its own process group: stop() ends its children too
        self.procs.append(proc)
        return proc

    def _start_local(self) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        link = self._spawn(
            "superlink",
            [
                "flower-superlink",
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
            ],
        )
        self._wait(lambda: reachable("127.0.0.1", port), link, "flower-superlink")
        for k in range(self.num_clients):
            self._spawn(
                f"supernode-{k}",
                [
                    "flower-supernode",
                    "--insecure",
                    "--superlink",
                    self.address,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(free_port()),
                    "--node-config",
                    _node_config(self.settings, k, self.num_clients),
                ],
            )
        time.sleep(0.5)
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a Flower process exited at start-up ({_program(proc)}):\n{self.logs()}")

    def _wait(self, ready, proc, what: str) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {self.settings.startup_timeout:g} s:\n{self.logs()}")
            time.sleep(0.2)

    def logs(self, tail: int = 3000) -> str:
        out = []
        for path in sorted(self.tmp.glob("*.log")) if self.tmp else []:
            text = path.read_text(errors="replace")
            out.append(f"--- {path.name}\n{text[-tail:]}")
        return "\n".join(out)

    # --- the flwr CLI ------------------------------------------------------------------

    def _write_cli_config(self) -> None:
        home = self.folder / "cli"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{self.address}"\ninsecure = true\n'
        )

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).parent / "flwr"), *args],
            capture_output=True,
            text=True,
            env=self.env("cli"),
            cwd=self.folder,
            timeout=timeout,
        )

    def submit_and_wait(self, job) -> None:
        from tqdm.auto import tqdm

        from privtrain.federated.server_app import postfix

        app = self.folder / "app"
        shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__"))  # flwr may touch the app dir
        run_config = self.folder / "run_config.toml"
        run_config.write_text(f"job = {json.dumps(job.to_text())}\n")
        done = self.flwr("run", str(app), CONNECTION, "--run-config", str(run_config), "--format", "json")
        run_id = _json(done.stdout).get("run-id")
        if done.returncode != 0 or not run_id:
            raise RuntimeError(f"flwr run failed (exit {done.returncode}): {done.stdout}{done.stderr}\n{self.logs()}")
        s = self.settings
        rounds_log = Path(job.output_dir) / "rounds.jsonl"
        bar = tqdm(
            total=s.rounds,
            desc=f"federated (deployment, run {run_id})",
            unit="round",
            disable=not s.progress,
            leave=False,
        )
        deadline = time.monotonic() + s.startup_timeout + s.rounds * s.round_timeout * 2
        seen, status = 0, ""
        try:
            while True:
                seen = _follow(rounds_log, seen, bar, postfix)
                status = self.status(run_id)
                if status.startswith("finished"):
                    break
                if self.procs and self.procs[0].poll() is not None:
                    raise RuntimeError(f"flower-superlink exited during run {run_id}:\n{self.logs()}")
                if time.monotonic() > deadline:
                    self.flwr("stop", run_id, CONNECTION)
                    raise RuntimeError(f"Flower run {run_id} did not finish in time (status {status!r}).")
                time.sleep(1.0)
            _follow(rounds_log, seen, bar, postfix)
        finally:
            bar.close()
        if status != "finished:completed" or not (Path(job.output_dir) / "history.json").is_file():
            from privtrain.federated import residency

            residency.raise_recorded(Path(job.output_dir))  # a node outside the allowed regions: one line
            log = self.flwr("log", run_id, CONNECTION, "--show", timeout=60)
            raise RuntimeError(f"Flower run {run_id} ended {status!r}. Its log:\n{log.stdout[-4000:]}\n{self.logs()}")

    def status(self, run_id: str) -> str:
        out = self.flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json", timeout=60)
        runs = _json(out.stdout).get("runs") or [{}]
        return str(runs[0].get("status", ""))


def _program(proc: subprocess.Popen) -> str:
    """The program a spawned process runs (every one is spawned with a list of arguments, the program first)."""
    args = proc.args
    return str(args[0] if isinstance(args, (list, tuple)) else args)


def _node_config(settings, k: int, num_clients: int) -> str:
    """A local SuperNode's node config: its partition, and its region when fl.regions declares one."""
    region = settings.region_of(k)
    return f"partition-id={k} num-partitions={num_clients}" + (f" region='{region}'" if region else "")


def _follow(path: Path, seen: int, bar, postfix) -> int:
    """Mirror the ServerApp's per-round lines on this process's progress bar."""
    if not path.is_file():
        return seen
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    for line in lines[seen:]:
        record = json.loads(line)
        if record["round"] > 0:
            bar.update(1)
            bar.set_postfix(**postfix(record))
    return len(lines)


def _json(text: str) -> dict:
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}


def _address(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"fl.deployment.superlink={text!r} must be HOST:PORT, e.g. 10.0.0.5:9093.")
    return host.strip("[]"), int(port)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM each process group we started (newest first), then SIGKILL whatever is left."""
    for proc in reversed(procs):
        if proc.poll() is None:
            _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait(timeout=5)
        _signal(proc, signal.SIGKILL)  # children of an exited leader (flwr-clientapp, flwr-serverapp)


def _signal(proc: subprocess.Popen, sig) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group this Popen created (start_new_session), not anyone else's
    except (ProcessLookupError, PermissionError):
        pass
