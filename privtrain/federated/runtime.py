"""One Ray runtime per process, reused by every simulated run (sweeps, notebooks, benchmarks).

Flower 1.42's ``run_simulation`` builds a ``RayBackend`` per run: ``init_ray`` starts Ray only if it is
not running yet, but ``terminate()`` always ends with ``ray.shutdown()``, and every run starts new
client actors (each imports torch again). No public option keeps either alive, so privtrain:

- starts Ray itself, once per process (:func:`ensure`), in a private temporary folder, and shuts it
  down at interpreter exit (``atexit``), removing that folder;
- hands ``run_simulation`` a ``RayBackend`` subclass (:func:`reusing_backend`: Flower's vce module
  looks the class up by name when each run starts) whose ``terminate()`` keeps Ray and the idle
  actor pool for the next run with the same client resources, instead of shutting Ray down.

Anything unexpected (a run that failed with busy actors, other client resources, another CPU count)
falls back to fresh actors or a fresh runtime.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager

_LOCK = threading.RLock()
_STATE: dict = {"tmp": None, "num_cpus": None, "pool": None, "resources": None, "atexit": False}


def ensure(num_cpus: float) -> str:
    """Start (or keep) this process's Ray runtime with ``num_cpus`` CPUs; returns its private temp folder."""
    import ray

    with _LOCK:
        if _STATE["tmp"] is not None and ray.is_initialized() and _STATE["num_cpus"] == num_cpus:
            return _STATE["tmp"]
        shutdown()
        tmp = tempfile.mkdtemp(prefix="ptray-", dir="/tmp" if os.path.isdir("/tmp") else None)  # short socket paths
        pythonpath = os.pathsep.join([*sys.path, *filter(None, [os.environ.get("PYTHONPATH")])])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Ray's note on accelerator env vars at num_gpus=0
            # Ray annotates num_cpus as int, but its resource spec holds CPU counts as floats: 2.0 starts 2 CPUs.
            ray.init(
                num_cpus=num_cpus,  # type: ignore[arg-type]
                num_gpus=0,
                _temp_dir=tmp,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
                runtime_env={
                    "env_vars": {
                        "PYTHONPATH": pythonpath,
                        "TMPDIR": tmp,
                        "RAY_TMPDIR": tmp,
                        "FLWR_TELEMETRY_ENABLED": "0",
                    }
                },
            )
        _STATE.update(tmp=tmp, num_cpus=num_cpus, pool=None, resources=None)
        if not _STATE["atexit"]:
            atexit.register(shutdown)
            _STATE["atexit"] = True
        return tmp


def shutdown() -> None:
    """Stop this process's Ray runtime (if privtrain started it) and remove its temporary folder."""
    with _LOCK:
        tmp = _STATE["tmp"]
        if tmp is None:
            return
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            _STATE.update(tmp=None, num_cpus=None, pool=None, resources=None)
            for _ in range(5):  # Ray's last log writers may still be closing their files
                shutil.rmtree(tmp, ignore_errors=True)
                if not os.path.exists(tmp):
                    break
                time.sleep(0.2)


def running() -> bool:
    """Whether privtrain's process-wide Ray runtime is up."""
    import ray

    return _STATE["tmp"] is not None and ray.is_initialized()


@contextmanager
def reusing_backend():
    """While inside, Flower's simulation builds :func:`_backend_class` instead of ``RayBackend``."""
    from flwr.server.superlink.fleet.vce.backend import raybackend

    with _LOCK:
        original = raybackend.RayBackend
        raybackend.RayBackend = _backend_class(original)
        try:
            yield
        finally:
            raybackend.RayBackend = original


def _backend_class(base):
    class ReusedRayBackend(base):
        """Flower's RayBackend, keeping Ray and its idle client actors for the next run."""

        def build(self, app_fn) -> None:
            pool = _STATE["pool"]
            if pool is not None and _STATE["resources"] == self.client_resources and _idle(pool):
                self.pool, self.app_fn = pool, app_fn
                return
            _drop_pool()
            super().build(app_fn)
            _STATE.update(pool=self.pool, resources=dict(self.client_resources))

        def terminate(self) -> None:
            if self.pool is not None and not _idle(self.pool):  # a failed run left busy actors: start afresh
                _drop_pool()
            # Ray stays up: ``runtime.shutdown`` ends it at interpreter exit.

    return ReusedRayBackend


def _idle(pool) -> bool:
    return len(pool.pool) == pool.num_actors and not pool._future_to_actor  # noqa: SLF001 - Flower's own pool


def _drop_pool() -> None:
    pool = _STATE["pool"]
    _STATE.update(pool=None, resources=None)
    if pool is not None:
        try:
            import ray

            for actor in list(pool.pool) + list(pool._future_to_actor.values()):  # noqa: SLF001
                ray.kill(actor)
        except Exception:  # noqa: BLE001 - the actors may already be gone with their runtime
            pass
