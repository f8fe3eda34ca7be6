"""Writing a run directory and hashing what was written (the ledger records the hashes)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def check_new(output_dir: Path) -> None:
    """Refuse a folder that already holds a run (a run never overwrites another's files: the ledger holds their
    hashes), or a path the filesystem cannot take (a name too long, ...).

    Raises:
        UserError: either.
    """
    from privtrain.errors import UserError, user_paths

    with user_paths(f"output directory {output_dir}"):
        taken = (output_dir / "run.json").exists() or (output_dir / "metrics.json").exists()
    if taken:
        raise UserError(
            f"output directory {output_dir} already holds a run; a run never overwrites another's "
            "files (the ledger holds their hashes): choose another output_dir."
        )


def prepare(output_dir: Path) -> None:
    """Make the run's folder and check that it takes files: called before the charge, so a folder the run
    cannot write (read-only, a name too long, no permission) costs no budget.

    Raises:
        UserError: the folder cannot be created or written.
    """
    import tempfile

    from privtrain.crypto.files import make_private_dirs
    from privtrain.errors import user_paths

    with user_paths(f"output directory {output_dir}"):
        make_private_dirs(output_dir)  # 0700: a run's files are its owner's alone
        with tempfile.TemporaryFile(dir=output_dir):
            pass


class Provisional:
    """The run's folder, made (:func:`prepare`) before the charge; removed again when the block raises before
    :meth:`keep` (the run was refused, or could not start): a run that charged nothing leaves nothing behind."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir, self.kept = output_dir, False
        self.made = not output_dir.exists()

    def keep(self) -> None:
        self.kept = True

    def __enter__(self) -> Provisional:
        prepare(self.output_dir)
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None and self.made and not self.kept:
            import shutil

            shutil.rmtree(self.output_dir, ignore_errors=True)


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` as JSON, mode 0600 (folders made 0700)."""
    return write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8), mode 0600 whatever the umask (folders made 0700)."""
    from privtrain.crypto.files import write_private

    return write_private(path, text.encode())


def lock(paths: list[Path], root: Path) -> None:
    """Make the run's folder 0700 and every file and folder in it 0600 / 0700, ``paths`` included wherever they
    are: files other libraries wrote (a figure, a card, Hydra's ``.hydra``) were created with the umask's mode.
    The hashes do not change."""
    import os

    from privtrain.crypto.files import DIR_MODE, FILE_MODE

    root = Path(root)
    for p in paths:
        if Path(p).is_file():
            Path(p).chmod(FILE_MODE)
    if not root.is_dir():
        return
    root.chmod(DIR_MODE)
    for folder, dirs, names in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(folder, d), DIR_MODE, follow_symlinks=False)
        for n in names:
            if not os.path.islink(os.path.join(folder, n)):
                os.chmod(os.path.join(folder, n), FILE_MODE)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_artifacts(paths: list[Path], root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` for each file that exists."""
    return {str(p.relative_to(root)): sha256_file(p) for p in paths if p.is_file()}
