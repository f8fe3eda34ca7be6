"""Key rotation: re-encrypt a run's sealed files under a new key, without retraining, and record it.

``privtrain keys rotate RUN_DIR --new-key-file NEW [--old-key-file OLD]``:

1. the run's files must match what its ledger recorded (:func:`privtrain.artifacts.evidence.require_intact`);
2. each sealed file the ledger recorded is opened with the old key (checked as the run's own file, so a
   swapped file is refused) and sealed again under NEW's current key, for the same role;
3. ``run.json``'s ``encryption`` names the new key id (and the ids it rotated from);
4. one ``artifacts`` entry chains the new hashes, each naming the hash it replaces, with the old and new
   key ids (:func:`privtrain.artifacts.evidence.rechain`): ``privtrain verify`` accepts the re-encrypted
   files as the run's, and an edit after the rotation is still caught.

The files are replaced one by one (each atomically); if recording fails, the old versions are put back.
"""

from __future__ import annotations

from pathlib import Path

from privtrain.crypto import aead
from privtrain.crypto.files import open_sealed, replace_private, run_context, seal_for
from privtrain.crypto.keys import Keyring
from privtrain.errors import UserError

WHY = "key rotation"


def rotate(run_dir: Path, new: Keyring, old: Keyring | None, ledger_path: str | None = None) -> dict:
    """Re-encrypt ``run_dir``'s sealed files under ``new.current`` and chain the new hashes.

    Args:
        old: the key(s) that open the files now (None: only ``new``'s keyring, e.g. one that holds both ids).

    Returns:
        ``{"run_id", "files", "old_key_ids", "new_key_id", "entry"}``.

    Raises:
        UserError: the run's files differ from its ledger, it has no sealed file, every file is already under
            the new key, or the old key cannot open a file (nothing is written or recorded).
    """
    import json

    from privtrain.artifacts import evidence
    from privtrain.artifacts.run_dir import write_json
    from privtrain.artifacts.verify import run_evidence

    run_dir = Path(run_dir)
    book, rec = run_evidence(run_dir, ledger_path)
    evidence.require_intact(run_dir, rec, command="privtrain keys rotate")
    opening = Keyring({**new.keys, **(old.keys if old else {})}, new.current, old.origin if old else new.origin)
    originals, sealed, old_ids = {}, {}, set()
    for name in sorted(rec.hashes):
        blob = (run_dir / name).read_bytes()
        header = aead.read_header(blob, str(run_dir / name))
        if header is None:
            continue
        if header.key_id == new.current:
            continue  # already under the new key (a rotation that stopped half way, or run twice)
        plain, context = open_sealed(blob, str(run_dir / name), expect=run_context(rec.run_id, name), keyring=opening)
        assert context is not None  # a sealed blob (its header was read above) was sealed for a context
        originals[name], sealed[name] = blob, seal_for(plain, new, context)
        old_ids.add(header.key_id)
    if not sealed:
        raise UserError(
            f"run {rec.run_id} has no file encrypted under another key than {new.current!r}; nothing to "
            "rotate (nothing was written or recorded)."
        )
    record_file = run_dir / "run.json"
    originals["run.json"] = record_file.read_bytes()
    record = json.loads(originals["run.json"])
    record["encryption"] = {
        "key_id": new.current,
        "algorithm": aead.ALGORITHM,
        "rotated_from": sorted(set((record.get("encryption") or {}).get("rotated_from", [])) | old_ids),
    }
    try:
        for name, blob in sealed.items():
            replace_private(run_dir / name, blob)
        write_json(record_file, record)
        detail = {"key_rotation": {"old_key_ids": sorted(old_ids), "new_key_id": new.current, "files": sorted(sealed)}}
        entry = evidence.rechain(
            book,
            run_dir,
            rec,
            [*sorted(sealed), "run.json"],
            why=f"{WHY} {', '.join(sorted(old_ids))} -> {new.current}",
            detail=detail,
        )
    except BaseException:
        for name, blob in originals.items():  # put the versions the ledger holds back
            replace_private(run_dir / name, blob)
        raise
    return {
        "run_id": rec.run_id,
        "files": sorted(sealed),
        "old_key_ids": sorted(old_ids),
        "new_key_id": new.current,
        "entry": getattr(entry, "id", None),
    }
