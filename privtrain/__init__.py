"""privtrain: train models on private data, with a privacy ledger.

    >>> import privtrain
    >>> result = privtrain.run("dp_sgd", ["privacy.target_epsilon=1"])
    >>> result.metrics["accuracy"], result.guarantee.epsilon
    >>> privtrain.ledger.open().spent("digits")

Importing this package is cheap: torch, flwr and sdv load only when a recipe runs.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["run", "ledger", "__version__"]


def run(recipe: str, overrides=(), *, output_dir=None):
    """Run a recipe; see :func:`privtrain.api.run`."""
    from privtrain.api import run as _run

    return _run(recipe, overrides, output_dir=output_dir)


def __getattr__(name: str):
    if name == "ledger":
        return importlib.import_module("privtrain.ledger")
    raise AttributeError(f"module 'privtrain' has no attribute {name!r}")
