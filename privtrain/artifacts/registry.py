"""A registry that keeps releases immutable: released runs in the MLflow Model Registry, bound to the ledger.

``privtrain release RUN_DIR --register`` pushes a released run (its ``release.json`` chained, every file
matching the ledger) as a new version of a registered model: the run's chained files are the version's
artifacts, and its manifest hash, guarantee, policy hash, risk class and approvals are its tags. After
MLflow stored it, the artifacts are read back and hashed: the version must hold exactly the files the
ledger chained, or it is deleted and the push refused. Then a chained ``registry`` entry records the
registry URI (without a password), the model name and version, the manifest's hash, the files' hashes
and the tags.

- ``privtrain registry verify NAME``: every version of NAME against its ledger entry: a version whose
  artifacts or tags no longer match, one the ledger never recorded, or one deleted from the registry is
  reported (exit 1).
- ``privtrain registry rollback NAME --to-version V``: registers version V's release again as a new version
  (after verifying it) and chains the rollback; the alias ``current`` follows the newest registration.

The default registry is ``sqlite:///<the ledger's folder>/registry.db`` with artifacts in
``registry-artifacts/`` beside it; any MLflow tracking URI works.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from privtrain.errors import UserError, require

STATUS = "registry"
EXPERIMENT = "privtrain-registry"
ALIAS = "current"
ARTIFACTS = "model"  # the artifact folder of the MLflow run that holds a release's files
TAG = "privtrain."


def default_uri(book) -> str:
    """``sqlite:///<folder>/registry.db``: beside an SQLite ledger, else in the project's ``.privtrain/``."""
    from privtrain import ledger

    where = book.location if book.backend == "sqlite" else str(ledger.default_path())
    folder = Path(where).resolve().parent if not where.startswith("postgres") else Path.cwd() / ".privtrain"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'registry.db'}"


def _client(uri: str):
    """An MlflowClient on ``uri`` for tracking and registry, quiet (no table-creation chatter, no progress bars)."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("--register needs MLflow: pip install 'privtrain[track]' (or mlflow-skinny).") from None
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after the import, which sets its own level
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment(client, uri: str) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the working directory
        location = (Path(uri[len("sqlite:///") :]).parent / "registry-artifacts").resolve().as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def _model_name(record) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"privtrain-{record.source.get('name') or 'run'}-{record.recipe}")


def _where(uri: str) -> str:
    """The URI as the ledger records it: without a password (an ``sqlite:////abs`` path is kept as given)."""
    from urllib.parse import urlsplit

    from privtrain.ledger.backends.base import redact

    try:
        secret = urlsplit(uri).password is not None or "password=" in uri.lower()
    except ValueError:
        secret = False
    return redact(uri) if secret else uri


def _tags(record, rec, manifest: dict, book) -> dict[str, str]:
    """The version's tags: what a reader of the registry needs to know without the ledger, all from the
    manifest and the run record (so they can be checked against the ledger)."""
    from privtrain.artifacts import approvals
    from privtrain.artifacts.release import MANIFEST

    own = record.own_guarantee
    return {
        f"{TAG}run_id": rec.run_id,
        f"{TAG}manifest_sha256": rec.hashes[MANIFEST],
        f"{TAG}files_sha256": approvals.files_digest(rec.hashes),
        f"{TAG}guarantee": json.dumps(own, sort_keys=True),
        f"{TAG}policy_sha256": (manifest.get("policy") or {}).get("sha256") or "none",
        f"{TAG}risk_class": (manifest.get("risk_class") or {}).get("name") or "none",
        f"{TAG}approvals": json.dumps([a["approver"] for a in manifest.get("approvals") or []]),
        f"{TAG}ledger_id": book.identity() or "",
    }


def _hashes_of(folder: Path) -> dict[str, str]:
    from privtrain.artifacts.run_dir import sha256_file

    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def stored_files(client, run_id: str) -> dict[str, str]:
    """{file: sha256} of what the registry holds for an MLflow run's release (downloaded and hashed)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, ARTIFACTS, tmp))
        except Exception:  # noqa: BLE001 - deleted or unreachable artifacts: nothing is held
            return {}
        return _hashes_of(local)


def _differences(expected: dict[str, str], held: dict[str, str]) -> list[str]:
    out = [f"{n} (missing)" for n in sorted(expected) if n not in held]
    out += [f"{n} (edited)" for n in sorted(expected) if n in held and held[n] != expected[n]]
    out += [f"{n} (not in the ledger's release)" for n in sorted(held) if n not in expected]
    return out


def register_release(run_dir: Path, *, uri: str | None = None, name: str | None = None, ledger_path: str | None = None):
    """Push the released run in ``run_dir`` as a new version; chain the registration. Returns the entry.

    Raises:
        UserError: the run is not released, its files differ from the ledger, the registry cannot be
            reached, or the stored version does not hold the ledger's files (it is deleted again).
    """
    from privtrain.artifacts import evidence
    from privtrain.artifacts.record import RunRecord
    from privtrain.artifacts.release import MANIFEST
    from privtrain.artifacts.verify import run_evidence

    run_dir = Path(run_dir)
    require(run_dir.is_dir(), f"run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    record = RunRecord.read(run_dir)
    book, rec = run_evidence(run_dir, ledger_path)
    require(
        MANIFEST in rec.hashes and (run_dir / MANIFEST).is_file(),
        f"privtrain release --register refused: run {rec.run_id} is not released (no {MANIFEST} chained in the "
        f"ledger); run privtrain release {run_dir} and pass its gates first; nothing was registered.",
    )
    evidence.require_intact(run_dir, rec, command="privtrain release --register")
    manifest = json.loads((run_dir / MANIFEST).read_text())
    uri = uri or default_uri(book)
    name = name or _model_name(record)
    tags = _tags(record, rec, manifest, book)
    earlier = [
        e
        for e in book.decisions(STATUS, rec.run_id)
        if e.detail.get("uri") == _where(uri) and e.detail.get("name") == name
    ]
    client = _client(uri)
    version, mlflow_run = _push(client, uri, name, run_dir, rec.hashes, tags)
    detail = {
        "action": "rollback" if earlier else "register",
        "uri": _where(uri),
        "name": name,
        "version": version,
        "mlflow_run": mlflow_run,
        "manifest_sha256": rec.hashes[MANIFEST],
        "files": dict(sorted(rec.hashes.items())),
        "tags": tags,
        "rollback_of": earlier[-1].detail["version"] if earlier else None,
    }
    return _record(book, client, rec.run_id, name, version, detail)


def _push(client, uri: str, name: str, run_dir: Path, hashes: dict[str, str], tags: dict[str, str]) -> tuple[str, str]:
    """Log the run's chained files as one MLflow run's artifacts and register them; (version, MLflow run id).

    Raises:
        UserError: MLflow could not store them, or what it stored is not what the ledger chained (the
            version is deleted again).
    """
    try:
        run = client.create_run(_experiment(client, uri), run_name=tags[f"{TAG}run_id"], tags=tags)
        for rel in sorted(hashes):
            parent = Path(rel).parent.as_posix()
            client.log_artifact(
                run.info.run_id, str(run_dir / rel), ARTIFACTS if parent == "." else f"{ARTIFACTS}/{parent}"
            )
        client.set_terminated(run.info.run_id)
        if client.search_registered_models(filter_string=f"name='{name}'") == []:
            client.create_registered_model(
                name,
                description="released by privtrain: every version is a "
                "released run whose files and tags its ledger chained",
            )
        mv = client.create_model_version(
            name, source=f"runs:/{run.info.run_id}/{ARTIFACTS}", run_id=run.info.run_id, tags=tags
        )
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a registry MLflow cannot use is the user's to fix
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"registry {_where(uri)}: MLflow could not register the release ({first}); fix "
            "--registry-uri; nothing was recorded in the ledger."
        ) from None
    found = _differences(hashes, stored_files(client, run.info.run_id))
    if found:
        client.delete_model_version(name, mv.version)
        raise UserError(
            f"registry {_where(uri)}: version {mv.version} of {name} does not hold the ledger's files "
            f"({'; '.join(found)}); it was deleted and nothing was recorded in the ledger."
        )
    return str(mv.version), run.info.run_id


def _record(book, client, run_id: str, name: str, version: str, detail: dict):
    """Chain the registration, then point the alias ``current`` at it (the ledger first: a version the
    ledger never recorded is what ``registry verify`` reports)."""
    entry = book.record_decision(run_id, STATUS, detail)
    client.set_registered_model_alias(name, ALIAS, version)
    return entry


def describe(entry) -> str:
    d = entry.detail
    what = (
        f"rolled back to the release of version {d['rollback_of']} as" if d["action"] == "rollback" else "registered as"
    )
    return (
        f"{what} {d['name']} version {d['version']} in {d['uri']} (alias {ALIAS}); ledger entry {entry.id} "
        f"records its manifest {d['manifest_sha256'][:12]} and {len(d['files'])} file hashes"
    )


def _entries(book, uri: str, name: str) -> dict:
    """The ledger's registry entries of model ``name`` in ``uri``, by version."""
    return {
        e.detail["version"]: e
        for e in book.decisions(STATUS)
        if e.detail.get("uri") == _where(uri) and e.detail.get("name") == name
    }


def verify(name: str, *, uri: str | None = None, ledger_path: str | None = None) -> tuple[int, list[str]]:
    """(versions checked, one line per problem) for model ``name``: each version against its ledger entry."""
    from privtrain import ledger

    book = ledger.open(ledger_path, create=False)
    uri = uri or default_uri(book)
    client = _client(uri)
    recorded = _entries(book, uri, name)
    try:
        versions = client.search_model_versions(filter_string=f"name='{name}'")
    except Exception:  # noqa: BLE001 - no such model, or no registry there
        versions = []
    require(
        bool(versions or recorded),
        f"no model {name!r} in the registry {_where(uri)} nor in the ledger "
        f"{book.location}; pass --registry-uri or the model's name (privtrain registry verify NAME).",
    )
    problems = []
    held = {str(v.version) for v in versions}
    for v in sorted(versions, key=lambda v: int(v.version)):
        entry = recorded.get(str(v.version))
        if entry is None:
            problems.append(f"version {v.version}: not recorded in the ledger (registered outside privtrain)")
            continue
        d = entry.detail
        bad = (
            _differences(d["files"], stored_files(client, v.run_id))
            if v.run_id == d["mlflow_run"]
            else [f"its source run {v.run_id} is not the one the ledger recorded ({d['mlflow_run']})"]
        )
        bad += [f"tag {k} changed" for k, val in sorted(d["tags"].items()) if (v.tags or {}).get(k) != val]
        if bad:
            problems.append(f"version {v.version} (ledger entry {entry.id}): {'; '.join(bad)}")
    problems += [
        f"version {ver} (ledger entry {e.id}): deleted from the registry"
        for ver, e in recorded.items()
        if ver not in held
    ]
    return len(versions), problems


def rollback(name: str, to_version: str, *, uri: str | None = None, ledger_path: str | None = None):
    """Register version ``to_version``'s release again as a new version of ``name``; chain it. Returns the entry.

    Raises:
        UserError: the ledger never recorded that version, or it no longer matches its ledger entry.
    """
    from privtrain import ledger

    book = ledger.open(ledger_path)
    uri = uri or default_uri(book)
    client = _client(uri)
    entry = _entries(book, uri, name).get(str(to_version))
    if entry is None:
        raise UserError(
            f"privtrain registry rollback refused: the ledger {book.location} records no version "
            f"{to_version} of {name!r} in {_where(uri)}; see privtrain registry verify {name}; nothing "
            "was registered."
        )
    d = entry.detail
    found = _differences(d["files"], stored_files(client, d["mlflow_run"]))
    try:
        tags = client.get_model_version(name, str(to_version)).tags or {}
    except Exception:  # noqa: BLE001 - the version was deleted: its files may still be held by its run
        tags = d["tags"]
    found += [f"tag {k} changed" for k, val in sorted(d["tags"].items()) if tags.get(k) != val]
    require(
        not found,
        f"privtrain registry rollback refused: version {to_version} of {name} no longer matches "
        f"ledger entry {entry.id} ({'; '.join(found)}); nothing was registered.",
    )
    mv = client.create_model_version(
        name, source=f"runs:/{d['mlflow_run']}/{ARTIFACTS}", run_id=d["mlflow_run"], tags=d["tags"]
    )
    detail = dict(d, action="rollback", version=str(mv.version), rollback_of=str(to_version))
    return _record(book, client, entry.run_id, name, str(mv.version), detail)
