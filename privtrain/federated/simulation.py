"""The simulation engine: Flower's in-process ``run_simulation`` on a small Ray cluster.

Clients get a fraction of a CPU each (``fl.simulation.cpus_per_client``), so
several run at once on a two-core machine while others wait on messages.
Ray's and Flower's temporary files go to a private folder that is removed
afterwards, and Ray is shut down, so nothing outlives the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager

from privtrain.federated.job import Job


def run(job: Job) -> None:
    """Run ``job`` with one virtual SuperNode per client; blocks until the last round."""
    from flwr.simulation import run_simulation

    from privtrain.federated.client_app import make_client_app
    from privtrain.federated.server_app import make_server_app

    s = job.settings
    with private_tmp() as tmp, quiet_flower():
        backend = {
            "client_resources": {"num_cpus": s.cpus_per_client, "num_gpus": 0.0},
            "init_args": {"num_cpus": s.num_cpus, "num_gpus": 0, "_temp_dir": tmp, "include_dashboard": False,
                          "logging_level": logging.ERROR, "log_to_driver": False},
        }
        try:
            run_simulation(server_app=make_server_app(job, progress=s.progress), client_app=make_client_app(job),
                           num_supernodes=job.num_clients, backend_config=backend)
        finally:
            _shutdown_ray()


@contextmanager
def private_tmp():
    """A short temporary folder (Ray's socket paths must stay short) for RAY_TMPDIR, TMPDIR and FLWR_HOME."""
    tmp = tempfile.mkdtemp(prefix="ptfl-", dir="/tmp" if os.path.isdir("/tmp") else None)
    keys = ("RAY_TMPDIR", "TMPDIR", "FLWR_HOME")
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


def _shutdown_ray() -> None:
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()


def run_job(settings, dataset, model, population, central, local, output_dir) -> dict:
    """The recipe's entry point: run in memory, return the ServerApp's history."""
    import json
    from pathlib import Path

    from privtrain.federated.job import in_memory

    job = in_memory(settings, dataset, model, population, central, local, Path(output_dir))
    run(job)
    return json.loads((Path(output_dir) / "history.json").read_text())
