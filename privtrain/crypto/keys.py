"""Where the artifact key comes from: a key file (a keyring of ids) or the environment.

In order of precedence:

1. ``artifacts.key_file=PATH`` (a run's setting) or the ``--key-file`` of a command;
2. ``PRIVTRAIN_ARTIFACT_KEY_FILE=PATH``;
3. ``PRIVTRAIN_ARTIFACT_KEY`` (32 bytes as 64 hex digits or base64) with ``PRIVTRAIN_ARTIFACT_KEY_ID``
   (default: ``env-`` and the first 8 hex digits of the key's SHA-256, a check value, not the key).

A key file is JSON readable by its owner only (mode 0600, else refused): either one key,
``{"id": "k1", "key": "<base64>"}``, or a keyring, ``{"current": "k2", "keys": {"k1": "...", "k2": "..."}}``:
new files are sealed under ``current``, and any id it holds opens a file sealed under it (rotation keeps
the old id until every run is re-encrypted, :mod:`privtrain.artifacts.rotation`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from privtrain.errors import UserError

ENV_KEY, ENV_KEY_ID, ENV_KEY_FILE = "PRIVTRAIN_ARTIFACT_KEY", "PRIVTRAIN_ARTIFACT_KEY_ID", "PRIVTRAIN_ARTIFACT_KEY_FILE"
KEY_BYTES = 32
HOW = (
    f"configure a key: artifacts.key_file=PATH, {ENV_KEY_FILE}=PATH, or {ENV_KEY} (+ {ENV_KEY_ID}); "
    "make one with `privtrain keys new PATH`"
)


@dataclass(frozen=True)
class Keyring:
    """The keys a process may use, by id.

    Attributes:
        keys: ``{id: 32-byte key}``.
        current: the id new files are sealed under.
        origin: where the keys came from (a path or an environment variable), for messages.
    """

    keys: dict
    current: str
    origin: str

    def key(self, key_id: str, where: str) -> bytes:
        """The key of ``key_id``.

        Raises:
            UserError: this keyring does not hold it.
        """
        if key_id not in self.keys:
            raise UserError(
                f"{where} is encrypted under key id {key_id!r}, which the configured key ({self.origin}, "
                f"id(s) {', '.join(sorted(self.keys))}) does not hold; configure the key file that holds "
                f"{key_id!r}."
            )
        return self.keys[key_id]

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]


def parse_secret(text: str, where: str) -> bytes:
    """32 bytes from 64 hex digits or base64.

    Raises:
        UserError: anything else.
    """
    text = str(text).strip()
    raw = None
    if len(text) == 2 * KEY_BYTES:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != KEY_BYTES:
        raise UserError(
            f"{where} is not a {KEY_BYTES}-byte key (64 hex digits or base64 of 32 bytes); make one with "
            "`privtrain keys new PATH`."
        )
    return raw


def _check_id(key_id, where: str) -> str:
    if not isinstance(key_id, str) or not 0 < len(key_id.encode()) < 256 or not key_id.isprintable():
        raise UserError(f'{where}: a key id must be printable text of 1-255 bytes, e.g. "2026-q1".')
    return key_id


def from_file(path: str | Path) -> Keyring:
    """Read a key file (one key or a keyring); refuse one that others may read.

    Raises:
        UserError: missing, readable by group or others, not JSON, or a malformed key.
    """
    file = Path(path).expanduser()
    try:
        mode = file.stat().st_mode
    except OSError:
        raise UserError(
            f"key file {str(file)!r} does not exist; create one with `privtrain keys new {file}`."
        ) from None
    if not stat.S_ISREG(mode):
        raise UserError(f"key file {str(file)!r} is not a file; pass the JSON key file `privtrain keys new` wrote.")
    if mode & 0o077:
        raise UserError(
            f"key file {file} has mode {stat.S_IMODE(mode):04o}, readable by others than its owner; "
            f"a key file must be 0600: chmod 600 {file}."
        )
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        data = None
    where = f"key file {file}"
    if isinstance(data, dict) and "keys" in data:
        keys, current = data.get("keys"), data.get("current")
        if not isinstance(keys, dict) or not keys or not isinstance(current, str) or current not in keys:
            raise UserError(f'{where}: a keyring needs "keys": {{id: key}} and a "current" id among them.')
        return Keyring(
            {_check_id(k, where): parse_secret(v, f"{where}, key {k!r}") for k, v in keys.items()}, current, str(file)
        )
    if isinstance(data, dict) and "id" in data and "key" in data:
        kid = _check_id(data["id"], where)
        return Keyring({kid: parse_secret(data["key"], where)}, kid, str(file))
    raise UserError(
        f'{where} is not a privtrain key file (JSON {{"id": ..., "key": ...}} or a keyring '
        '{"current": ..., "keys": {...}}); make one with `privtrain keys new PATH`.'
    )


def from_env() -> Keyring | None:
    """The key of ``PRIVTRAIN_ARTIFACT_KEY`` (+ ``_ID``), or None when unset."""
    text = os.environ.get(ENV_KEY)
    if not text:
        return None
    key = parse_secret(text, ENV_KEY)
    kid = os.environ.get(ENV_KEY_ID) or f"env-{hashlib.sha256(key).hexdigest()[:8]}"
    return Keyring({_check_id(kid, ENV_KEY_ID): key}, kid, ENV_KEY)


def resolve(key_file: str | None = None) -> Keyring | None:
    """The configured keyring (see the module's precedence), or None when no key is configured.

    Raises:
        UserError: a configured key that cannot be used, or both environment variables set.
    """
    if key_file:
        return from_file(key_file)
    env_file, env_key = os.environ.get(ENV_KEY_FILE), os.environ.get(ENV_KEY)
    if env_file and env_key:
        raise UserError(f"both {ENV_KEY_FILE} and {ENV_KEY} are set; unset one so it is clear which key encrypts.")
    if env_file:
        return from_file(env_file)
    return from_env()


def configured(key_file: str | None = None) -> bool:
    """Is a key configured (without reading it)? What a policy that requires encryption judges."""
    return bool(key_file or os.environ.get(ENV_KEY_FILE) or os.environ.get(ENV_KEY))


def new_file(path: str | Path, key_id: str | None = None, *, add: bool = False) -> Keyring:
    """Write a fresh random key to ``path`` (mode 0600), or with ``add`` a new current key into an existing keyring.

    Raises:
        UserError: the file exists (without ``add``), or does not (with it).
    """
    import secrets
    import time

    file = Path(path).expanduser()
    kid = _check_id(key_id or f"{time.strftime('%Y%m%d')}-{secrets.token_hex(3)}", "--id")
    key = secrets.token_bytes(KEY_BYTES)
    if add:
        ring = from_file(file)
        if kid in ring.keys:
            raise UserError(f"key file {file} already holds id {kid!r}; pick another --id.")
        keys = {**ring.keys, kid: key}
    elif file.exists():
        raise UserError(
            f"{file} exists; a key file is never overwritten (its key may still open files): choose "
            "another path, or --add a new key to it."
        )
    else:
        keys = {kid: key}
    text = (
        json.dumps({"current": kid, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}, indent=2)
        + "\n"
    )
    from privtrain.crypto.files import replace_private, write_private

    (replace_private if add else write_private)(file, text.encode(), exclusive=not add)
    return Keyring(keys, kid, str(file))
