"""Recipes: plain functions ``run(cfg, output_dir) -> RunResult``, imported on demand."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from privtrain.errors import UserError

_MODULES = {
    "dp_sgd": "privtrain.recipes.dp_sgd",
    "federated": "privtrain.recipes.federated",
    "synthetic": "privtrain.recipes.synthetic",
}


def get(name: str) -> Callable:
    if name not in _MODULES:
        raise UserError(f"recipe {name!r} is unknown; choose one of {', '.join(_MODULES)}.")
    return importlib.import_module(_MODULES[name]).run
