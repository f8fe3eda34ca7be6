"""The one door for model files: every checkpoint privtrain writes or reads goes through :func:`save` / :func:`load`.

dp_sgd's ``checkpoint.pt`` (weights, optimizer and accountant state, ``meta``), federated's ``final_model.pt``
(the final global model's state dict), a resume, ``privtrain.load`` / ``privtrain predict`` and the audit all
use this pair, so how model files are stored is decided here once: sealed with the run's key when one is
configured (:mod:`privtrain.artifacts.sealed`, docs/governance/encryption.md), 0600 either way.

Loading is always ``weights_only``: tensors and plain values only, so a crafted pickle cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from privtrain.crypto.keys import Keyring


def save(obj: Any, path: Path) -> Path:
    """Write ``obj`` (a state dict, or a dict of state dicts and plain values) to ``path``.

    Returns:
        ``path``, for the run's list of files.
    """
    from privtrain.artifacts import sealed

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return sealed.save_torch(obj, path)


def load(path: Path, *, keyring: Keyring | None = None) -> Any:
    """Read what :func:`save` wrote, on the CPU, as weights and plain values only, opened if sealed.

    Args:
        keyring: the key to open a sealed file with (default: the run's or the environment's).

    Raises:
        UserError: a sealed file that cannot be opened (no key, wrong key, altered, swapped).
        Whatever ``torch.load`` raises for a missing, truncated or unsafe file; callers turn it into one line
        that names what the file was for.
    """
    from privtrain.artifacts import sealed

    return sealed.load_torch(Path(path), keyring=keyring)
