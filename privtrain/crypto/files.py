"""Private files (0600, folders 0700) and sealing them with the key a run or command uses.

A run makes its keyring active (:func:`using`) once it is resolved, before any row is read, and binds its
run id when the ledger has reserved it; recipes then write through :func:`write_run_file`, which seals
when a key is configured. Readers call :func:`read_bytes`, which opens a sealed file with the active
keyring (or the environment's) and checks that it is the file expected at that place.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from privtrain.crypto import aead
from privtrain.crypto.keys import HOW, Keyring
from privtrain.errors import UserError, user_paths

FILE_MODE, DIR_MODE = 0o600, 0o700


@dataclass
class Sealer:
    """The key a run seals its files with (None: written in the clear) and the run they belong to."""

    keyring: Keyring | None
    run_id: str | None = None


_ACTIVE: ContextVar[Sealer | None] = ContextVar("privtrain_sealer", default=None)


@contextmanager
def using(keyring: Keyring | None):
    """Make ``keyring`` the one this run seals with and opens with (None: a run without a key)."""
    token = _ACTIVE.set(Sealer(keyring))
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


def active() -> Sealer | None:
    return _ACTIVE.get()


def bind(run_id: str) -> None:
    """The ledger has reserved the run: files written from now on are sealed as this run's."""
    sealer = _ACTIVE.get()
    if sealer is not None:
        sealer.run_id = run_id


def run_context(run_id: str, name: str) -> str:
    """The role a run's file is sealed for: its run and its name."""
    return f"run {run_id}/{name}"


def expected_context(path: Path) -> str | None:
    """The role a file should have been sealed for: that of the run beside it (``run.json``), if any."""
    try:
        run_id = json.loads((Path(path).parent / "run.json").read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return run_context(run_id, Path(path).name) if isinstance(run_id, str) else None


# --- private files --------------------------------------------------------------------------------


def make_private_dirs(folder: Path) -> Path:
    """Create ``folder`` and its missing parents as 0700 (whatever the umask); existing folders keep their mode."""
    folder = Path(folder)
    missing = []
    at = folder
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for made in reversed(missing):
        try:
            made.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it meanwhile
            continue
        os.chmod(made, DIR_MODE)
    return folder


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` with mode 0600 from the moment it exists (umask-independent)."""
    path = Path(path)
    make_private_dirs(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on O_TRUNC: set it
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(data)
    finally:
        os.close(fd)
    return path


def replace_private(path: Path, data: bytes, **_) -> Path:
    """Replace ``path`` atomically (a temporary file beside it, then a rename) with a 0600 file."""
    import secrets

    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_private(temp, data, exclusive=True)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


# --- sealing -----------------------------------------------------------------------------------------


def seal_for(data: bytes, keyring: Keyring, context: str) -> bytes:
    return aead.seal(data, keyring.current_key, keyring.current, context)


def write_run_file(path: Path, data: bytes) -> Path:
    """Write one of the running run's files: sealed under the active key when one is configured, 0600 either way."""
    sealer = _ACTIVE.get()
    if sealer is not None and sealer.keyring is not None:
        if sealer.run_id is None:
            raise RuntimeError(
                "a sealed run file is written before the run has its id (files are written after "
                "the ledger's reservation)"
            )
        data = seal_for(data, sealer.keyring, run_context(sealer.run_id, Path(path).name))
    return write_private(path, data)


def write_file(path: Path, data: bytes, keyring: Keyring | None, context: str) -> Path:
    """Write a file outside a run (predictions): sealed for ``context`` under ``keyring`` when given, 0600."""
    return write_private(path, seal_for(data, keyring, context) if keyring is not None else data)


def opening_keyring(keyring: Keyring | None = None) -> Keyring | None:
    """The keyring to open sealed files with: the one given, the run's, or the environment's."""
    if keyring is not None:
        return keyring
    sealer = _ACTIVE.get()
    if sealer is not None and sealer.keyring is not None:
        return sealer.keyring
    from privtrain.crypto.keys import resolve

    return resolve(None)


def open_sealed(
    blob: bytes, where: str, *, expect: str | None, keyring: Keyring | None = None
) -> tuple[bytes, str | None]:
    """(plaintext, the context it was sealed for) of ``blob``; a plain blob comes back as it is (context None).

    Raises:
        UserError: no key configured, a key id the keyring lacks, failed authentication, or a file sealed
            for another place than ``expect`` (swapped in).
    """
    header = aead.read_header(blob, where)
    if header is None:
        return blob, None
    ring = opening_keyring(keyring)
    if ring is None:
        raise UserError(f"{where} is encrypted (key id {header.key_id!r}) and no key is configured; {HOW}.")
    plain = aead.unseal(blob, header, ring.key(header.key_id, where), where)
    if expect is not None and header.context != expect:
        raise UserError(
            f"{where} was encrypted as {header.context!r}, not as {expect!r}: it was swapped in from "
            "another run or another file; restore the run's own file."
        )
    return plain, header.context


def read_bytes(path: Path, *, keyring: Keyring | None = None, expect: str | None = "beside") -> bytes:
    """A file's bytes, opened if sealed; ``expect="beside"`` checks its role against the run beside it.

    Raises:
        UserError: as :func:`open_sealed`, or the file cannot be read.
    """
    path = Path(path)
    with user_paths(str(path)):
        blob = path.read_bytes()
    want = expected_context(path) if expect == "beside" else expect
    return open_sealed(blob, str(path), expect=want, keyring=keyring)[0]


def is_sealed_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return aead.is_sealed(handle.read(len(aead.MAGIC)))
    except OSError:
        return False
