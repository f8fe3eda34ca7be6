"""Recipes: plain modules with two functions, called by :func:`privtrain.api.execute_settings`.

- ``plan(settings) -> planned``: load and identify the data, check every setting, and describe the
  run's access (``planned.access``, a :class:`~privtrain.ledger.Access`: whose rows, which mechanisms)
  from the config and public facts. Nothing here reads rows for training.
- ``train(planned, reserved, output_dir) -> Outcome``: called once the ledger has reserved every
  charge; trains, evaluates, writes artifacts and the run record, and says what it actually did.
  The files every run leaves are written by :mod:`privtrain.artifacts.run_files` from a
  :class:`~privtrain.artifacts.run_files.RunFiles` the recipe fills in; the pieces a recipe needs
  besides (resume checks, guarantees, reports) live in :mod:`privtrain.runs`.

Recipes never touch the ledger: the API builds the run request once, and the ledger's one door
(``Ledger.charging``) builds the charges, checks the policy, reserves and records.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from privtrain.errors import UserError

_MODULES = {
    "dp_sgd": "privtrain.recipes.dp_sgd",
    "federated": "privtrain.recipes.federated",
    "synthetic": "privtrain.recipes.synthetic",
}


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise UserError(f"recipe {name!r} is unknown; choose one of {', '.join(_MODULES)}.")
    return importlib.import_module(_MODULES[name])
