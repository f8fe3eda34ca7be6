"""The Python API: ``privtrain.run("dp_sgd", ["privacy.target_epsilon=1"])``.

Notebooks and benchmarks use this path; the CLI uses Hydra's own launcher, and
both end in :func:`execute`.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from privtrain import config, recipes
from privtrain.errors import UserError
from privtrain.result import RunResult


def run(recipe: str, overrides: list[str] | tuple[str, ...] = (), *, output_dir: str | Path | None = None) -> RunResult:
    """Compose ``configs/<recipe>.yaml`` with Hydra overrides and run it.

    Args:
        recipe: ``"dp_sgd"``, ``"federated"`` or ``"synthetic"``.
        overrides: Hydra overrides, e.g. ``["privacy.target_epsilon=1", "model=mlp"]``.
        output_dir: where artifacts go; default ``outputs/<recipe>/<time>-<id>``.

    Returns:
        The run's :class:`~privtrain.result.RunResult`.

    Raises:
        UserError: bad input (nothing is charged to the ledger).
    """
    cfg = config.compose(recipe, overrides)
    if output_dir is None:
        output_dir = Path("outputs") / recipe / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-{secrets.token_hex(3)}"
    return execute(recipe, cfg, Path(output_dir))


def execute(recipe: str, cfg, output_dir: Path) -> RunResult:
    """Run a composed config. Shared by the API and the CLI."""
    missing = config.missing_keys(cfg)
    if missing:
        raise UserError(f"{missing[0]} is required; pass {missing[0]}=VALUE.")
    return recipes.get(recipe)(cfg, Path(output_dir))
