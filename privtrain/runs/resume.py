"""``resume=outputs/.../checkpoint.pt``: the checkpoint a dp_sgd run continues from, checked before any charge.

A checkpoint is loaded only once its run's ledger (this run's) holds its hash
(:mod:`privtrain.artifacts.checkpoint_ledger`), only as weights and plain values, and only when it was
trained on the very table this run read (fingerprint) with the same model. The dataset and model
settings themselves default to the checkpoint's run (:mod:`privtrain.config.resume`), so a resume needs
only ``resume=``; these checks are what keeps a wrong or edited default from training anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from privtrain.errors import UserError

if TYPE_CHECKING:
    from privtrain.models import ModelSpec


def load(path: str | None, fingerprint: str, model_spec: ModelSpec, ledger_path: str | None) -> dict | None:
    """The checkpoint to continue from, checked against this run (and its ledger) before anything is charged.

    Args:
        path: ``resume=``; None or empty: no resume.
        fingerprint: the fingerprint of the table this run read.
        model_spec: this run's model.
        ledger_path: this run's ledger.

    Returns:
        The checkpoint (``model``, ``optimizer``, ``accountant``, ``meta``), or None.

    Raises:
        UserError: no such file, a file its ledger did not record (or another ledger's), one that does not load
            safely, or one trained on another table or with another model (one line; nothing is charged).
    """
    if not path:
        return None
    from privtrain.artifacts import checkpoint, checkpoint_ledger

    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise UserError(f"resume: no checkpoint at {str(file)!r}; pass the checkpoint.pt of an earlier run.")
    checkpoint_ledger.require_charged_here(file, ledger_path)  # loaded only once its hash matches this ledger
    try:  # weights and plain values only: a crafted pickle cannot run code here
        ckpt = checkpoint.load(file)  # opened with the run's key when sealed
        meta = ckpt["meta"]
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe file is the user's to fix
        raise UserError(
            f"resume: {file} is not a privtrain checkpoint that loads safely "
            f"({type(exc).__name__}); pass the checkpoint.pt of a privtrain run."
        ) from None
    checkpoint_ledger.require_same_ledger(file, meta, ledger_path)
    if meta.get("fingerprint") != fingerprint:
        raise UserError(
            f"resume: {file} was trained on a different dataset; resume with the same dataset.* settings "
            "(or none: a resume reads its checkpoint's run's dataset)."
        )
    if meta.get("model") != model_spec.to_dict():
        raise UserError(
            f"resume: {file} holds a different model ({meta.get('model')}); resume with the same "
            "model.* settings (or none: a resume reads its checkpoint's run's model)."
        )
    return ckpt


def prior_steps(resume: dict | None) -> int:
    """The DP-SGD steps the checkpoint had already taken (0 without a resume)."""
    return int(resume["meta"]["steps"]) if resume is not None else 0
