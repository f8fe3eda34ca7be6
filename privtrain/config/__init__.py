"""The config layer: the shipped Hydra configs, composition, and typed settings.

This package is the border. Only it and the CLI know Hydra and OmegaConf: :func:`settings` turns a
composed config into a typed :class:`RunSettings` (dataset and source, model, training, privacy,
federated, synthesizer, ledger and audit settings), and nothing below the recipes ever sees a
config object.

    >>> from privtrain import config
    >>> s = config.settings("dp_sgd", config.compose("dp_sgd", ["privacy.target_epsilon=1"]))  # doctest: +SKIP
    >>> s.privacy.target_epsilon, s.dataset.loader                                             # doctest: +SKIP
"""

from privtrain.config.compose import (
    GROUPS,
    check_recipe,
    compose,
    config_dir,
    config_hash,
    groups,
    missing_keys,
    recipes,
    register_resolvers,
    to_container,
    validate_overrides,
)
from privtrain.config.resume import resumed
from privtrain.config.settings import RunSettings, settings

__all__ = [
    "GROUPS",
    "RunSettings",
    "check_recipe",
    "compose",
    "config_dir",
    "config_hash",
    "groups",
    "missing_keys",
    "recipes",
    "register_resolvers",
    "resumed",
    "settings",
    "to_container",
    "validate_overrides",
]
