"""The one door for model files: every checkpoint privtrain writes or reads goes through :func:`save` / :func:`load`.

dp_sgd's ``checkpoint.pt`` (weights, optimizer and accountant state, ``meta``), federated's ``final_model.pt``
(the final global model's state dict), a resume, ``privtrain.load`` / ``privtrain predict`` and the audit all
use this pair, so a change to how model files are stored (e.g. encryption at rest) is made here once.

Loading is always ``weights_only``: tensors and plain values only, so a crafted pickle cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save(obj: Any, path: Path) -> Path:
    """Write ``obj`` (a state dict, or a dict of state dicts and plain values) to ``path``.

    Returns:
        ``path``, for the run's list of files.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def load(path: Path) -> Any:
    """Read what :func:`save` wrote, on the CPU, as weights and plain values only.

    Raises:
        Whatever ``torch.load`` raises for a missing, truncated or unsafe file; callers turn it into one line
        that names what the file was for.
    """
    import torch

    return torch.load(Path(path), map_location="cpu", weights_only=True)
