"""Which code produced a run: package versions and the git commit."""

from __future__ import annotations

from importlib import metadata

from privtrain.ledger.provenance import git_commit  # one definition for ledger entries and model cards

__all__ = ["git_commit", "versions"]

PACKAGES = ("privtrain", "torch", "opacus", "dp-accounting", "hydra-core", "flwr", "sdv", "scikit-learn", "numpy")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
