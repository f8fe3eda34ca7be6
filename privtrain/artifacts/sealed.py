"""A run's sealable artifacts: torch checkpoints and tables, written sealed when a key is configured.

Recipes call :func:`save_torch` / :func:`load_torch` where they would call ``torch.save`` / ``torch.load``,
and :func:`table_bytes` + :func:`privtrain.crypto.files.write_run_file` for rows; readers decrypt
transparently (:func:`privtrain.crypto.files.read_bytes`). What a run sealed is stated in ``run.json``
(:func:`record`).
"""

from __future__ import annotations

import io
from pathlib import Path

from privtrain.crypto import aead
from privtrain.crypto.files import active, read_bytes, write_run_file
from privtrain.crypto.keys import Keyring


def save_torch(obj, path: Path) -> Path:
    """``torch.save(obj, path)``, sealed when the run has a key; the file is 0600 either way."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_run_file(Path(path), buffer.getvalue())


def load_torch(path: Path, *, keyring: Keyring | None = None):
    """Weights and plain values from a checkpoint, opened if sealed (no code runs while loading).

    Raises:
        UserError: the file is sealed and cannot be opened (no key, wrong key, altered, swapped).
        Exception: whatever ``torch.load`` raises on a file that is no checkpoint (callers say so in one line).
    """
    import torch

    data = read_bytes(Path(path), keyring=keyring)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def seal_in_place(path: Path) -> Path:
    """Seal a file another process wrote in the clear (Flower's server app writes the final model), when the
    run has a key; make it 0600 either way."""
    from privtrain.crypto.files import FILE_MODE, replace_private, run_context, seal_for

    path = Path(path)
    sealer = active()
    data = path.read_bytes()
    if sealer is not None and sealer.keyring is not None and not aead.is_sealed(data):
        replace_private(path, seal_for(data, sealer.keyring, run_context(str(sealer.run_id), path.name)))
    else:
        path.chmod(FILE_MODE)
    return path


def table_bytes(frame, fmt: str) -> bytes:
    """A DataFrame as CSV or Parquet bytes (what ``to_csv`` / ``to_parquet`` would write)."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def record() -> dict | None:
    """``run.json``'s ``encryption``: the key id and algorithm the running run seals with, or None."""
    sealer = active()
    if sealer is None or sealer.keyring is None:
        return None
    return {"key_id": sealer.keyring.current, "algorithm": aead.ALGORITHM}
