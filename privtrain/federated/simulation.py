"""The simulation engine: Flower's in-process ``run_simulation`` on this process's Ray runtime.

Ray is started once per process and reused by every run (:mod:`privtrain.federated.runtime`;
``fl.simulation.reuse_ray=false`` starts and stops it per run, as Flower does by default). The
clients' rows go to Ray's object store once per run: the ClientApp carries a reference, not the
rows, so messages do not copy the data, and each client actor fetches the rows once. Flower's
temporary files go to a private folder that is removed afterwards; Ray's live in the runtime's
own private folder, removed when the runtime stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

from privtrain.federated import runtime
from privtrain.federated.job import Job

if TYPE_CHECKING:
    from flwr.server.superlink.fleet.vce.backend import BackendConfig

    from privtrain.federated.task import ClientData

_CACHE: dict = {}  # in each Ray worker: the rows of the run it serves (one run at a time)


class StoredRows:
    """The clients' rows in Ray's object store; pickles as a reference, fetched once per worker process."""

    def __init__(self, ref) -> None:
        self.ref = ref

    def client(self, k: int) -> ClientData:
        key = self.ref.hex()
        if key not in _CACHE:
            import ray

            _CACHE.clear()  # a worker reused across runs keeps only the current run's rows
            _CACHE[key] = ray.get(self.ref)
        return _CACHE[key].client(k)


def preflight(settings) -> None:
    """Start the Ray runtime the run will use, before anything is charged: a runtime that cannot start (a stale
    ``RAY_ADDRESS``, no memory, an overloaded machine timing out) costs no budget. With
    ``fl.simulation.reuse_ray=false`` this is the run's fresh runtime.

    Raises:
        UserError: Ray did not start.
    """
    from privtrain.errors import UserError

    with runtime._LOCK:  # noqa: SLF001 - the runtime is shared by the process's simulations
        if not settings.reuse_ray:
            runtime.shutdown()
        try:
            runtime.ensure(settings.num_cpus)
        except Exception as exc:  # noqa: BLE001 - Ray raises many types; none of them is privtrain's bug
            runtime.shutdown()
            why = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise UserError(
                f"the federated simulation could not start Ray ({why}); nothing was charged: unset a "
                "stale RAY_ADDRESS, free memory, lower fl.simulation.num_cpus, or try again."
            ) from None


def run(job: Job) -> None:
    """Run ``job`` with one virtual SuperNode per client; blocks until the last round (:func:`preflight` has
    started Ray before the charge; a runtime that stopped since is started again)."""
    import ray
    from flwr.simulation import run_simulation

    from privtrain.federated.client_app import make_client_app
    from privtrain.federated.server_app import make_server_app

    s = job.settings
    with runtime._LOCK:  # noqa: SLF001 - one simulation at a time per process: they share the runtime
        runtime.ensure(s.num_cpus)  # before private_tmp: Ray's processes must not inherit a per-run TMPDIR
        ref = ray.put(job.rows)
        job = job.with_rows(StoredRows(ref))
        backend: BackendConfig = {
            "client_resources": {"num_cpus": s.cpus_per_client, "num_gpus": 0.0},
            "init_args": {"logging_level": logging.ERROR, "log_to_driver": False},
        }
        try:
            with private_tmp(), quiet_flower(), runtime.reusing_backend() if s.reuse_ray else nullcontext():
                run_simulation(
                    server_app=make_server_app(job, progress=s.progress),
                    client_app=make_client_app(job),
                    num_supernodes=job.num_clients,
                    backend_config=backend,
                )
        finally:
            del job, ref
            if not s.reuse_ray:
                runtime.shutdown()  # Flower's backend already stopped Ray; this removes the folder


@contextmanager
def private_tmp():
    """A private temporary folder for TMPDIR and FLWR_HOME while Flower runs; removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="ptfl-", dir="/tmp" if os.path.isdir("/tmp") else None)
    keys = ("TMPDIR", "FLWR_HOME")
    saved = {k: os.environ.get(k) for k in (*keys, "FLWR_TELEMETRY_ENABLED", "FLWR_DISABLE_UPDATE_CHECK")}
    os.environ.update({k: tmp for k in keys})
    os.environ.update(FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    try:
        yield tmp
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def quiet_flower():
    """Flower logs every round at INFO; the progress bar says it better. Restored afterwards."""
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # run_simulation's deprecation notice; Opacus' secure-RNG notice
        try:
            yield
        finally:
            logger.setLevel(level)


def run_job(settings, dataset, model, population, central, local, output_dir) -> dict:
    """The recipe's entry point: run in memory, return the ServerApp's history."""
    import json
    from pathlib import Path

    from privtrain.federated.job import in_memory

    job = in_memory(settings, dataset, model, population, central, local, Path(output_dir))
    run(job)
    return json.loads((Path(output_dir) / "history.json").read_text())
