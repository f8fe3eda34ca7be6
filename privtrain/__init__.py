"""privtrain: train models on private data, with a privacy ledger.

    >>> import privtrain
    >>> result = privtrain.run("dp_sgd", ["privacy.target_epsilon=1"])
    >>> result.metrics["accuracy"], result.guarantee.epsilon
    >>> privtrain.ledger.open().spent("digits")
    >>> privtrain.load(result.output_dir).predict(new_rows)

Importing this package is cheap: torch, flwr and sdv load only when a recipe runs.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["run", "load", "ledger", "__version__"]


def run(recipe: str, overrides=(), *, output_dir=None):
    """Run a recipe; see :func:`privtrain.api.run`."""
    from privtrain.api import run as _run

    return _run(recipe, overrides, output_dir=output_dir)


def load(run_dir, *, ledger_path=None, key_file=None):
    """A finished dp_sgd run's model with its preprocessing; see :func:`privtrain.inference.load`."""
    from privtrain.inference import load as _load

    return _load(run_dir, ledger_path=ledger_path, key_file=key_file)


def __getattr__(name: str):
    if name == "ledger":
        return importlib.import_module("privtrain.ledger")
    raise AttributeError(f"module 'privtrain' has no attribute {name!r}")
