"""Shared fixtures. ``pytest`` runs the fast tests; ``pytest --slow`` adds the end-to-end ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (CI does)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _sbom_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("privtrain-cache")


@pytest.fixture(autouse=True)
def _private_user_data(tmp_path, monkeypatch, _sbom_cache):
    """Per-user state (ledger anchors, the fallback ledger) goes to the test's own folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("PRIVTRAIN_LEDGER_KEY", raising=False)
    monkeypatch.setenv("PRIVTRAIN_CACHE", str(_sbom_cache))  # one SBOM per test session, never the user's cache
    monkeypatch.delenv("PRIVTRAIN_POLICY", raising=False)
    for name in ("PRIVTRAIN_ARTIFACT_KEY", "PRIVTRAIN_ARTIFACT_KEY_ID", "PRIVTRAIN_ARTIFACT_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)  # a key in the user's environment would seal the tests' runs


@pytest.fixture
def ledger_path(tmp_path, monkeypatch) -> Path:
    """A fresh ledger file for the test; PRIVTRAIN_LEDGER points at it."""
    path = tmp_path / "ledger.db"
    monkeypatch.setenv("PRIVTRAIN_LEDGER", str(path))
    return path


@pytest.fixture
def cli(tmp_path, ledger_path):
    """Run ``privtrain ...`` in a subprocess inside ``tmp_path``; returns CompletedProcess."""

    def run(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "PRIVTRAIN_LEDGER": str(ledger_path), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "privtrain.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )

    return run


# Tiny settings that keep an end-to-end dp_sgd run to a few seconds.
TINY = ["recipe.epochs=1", "recipe.progress=false", "recipe.batch_size=256", "recipe.max_physical_batch_size=256"]


# --- a real PostgreSQL server for the ledger's second backend ----------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session (per xdist worker), in a temp folder; stopped at the end even when
    tests fail. Without PostgreSQL binaries the tests that need it are skipped, except under CI (CI=true),
    where that is a failure: the test extra installs them (pgserver)."""
    from ledger_helpers.pg import Server, Unavailable

    server = Server()
    try:
        server.start()
    except Unavailable as exc:
        server.stop()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is needed in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server, dropped after the test: its URL."""
    url = postgres_server.database()
    try:
        yield url
    finally:
        postgres_server.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request, tmp_path):
    """Where a ledger test's ledger lives, once per backend: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "ledger.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def flower_identity():
    """Flower's task identity, as a ClientApp process has it, for calling client code in-process."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = {k: getattr(TaskIdentity, f"_{k}", None) for k in ("task_id", "run_id", "node_id")}
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    for k, v in saved.items():
        setattr(TaskIdentity, f"_{k}", v)
