"""Hydra composition: where the shipped configs live, composing them, and one-line errors.

Only this package and the CLI know Hydra.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from privtrain.errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

GROUPS = ("recipe", "dataset", "model", "privacy", "ledger", "fl", "synth", "audit", "experiment")


def config_dir() -> Path:
    """The shipped ``configs/`` folder.

    An installed wheel holds it as ``privtrain/configs`` (setup.py maps it there);
    a source checkout or editable install has it beside the package.
    """
    package = Path(__file__).resolve().parent.parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def recipes() -> list[str]:
    """Recipe names: the primary config files at the top of ``configs/``."""
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def groups() -> dict[str, list[str]]:
    """Each config group with its options."""
    root = config_dir()
    return {g: sorted(p.stem for p in (root / g).glob("*.yaml")) for g in GROUPS if (root / g).is_dir()}


def check_recipe(name: str) -> None:
    if name not in recipes():
        raise UserError(f"recipe {name!r} is unknown; choose one of {', '.join(recipes())} (see `privtrain ls`).")


SUFFIX_ENV = "PRIVTRAIN_RUN_SUFFIX"


def register_resolvers(*, fresh: bool = False) -> None:
    """``${privtrain_unique:}``: a random suffix for run and sweep directories (configs/hydra/default.yaml).

    It lives in an environment variable so that every trial of a sweep, in launcher worker processes
    too (joblib, submitit), resolves the same sweep directory. ``fresh`` draws a new one (each command).
    """
    import os
    import secrets

    from omegaconf import OmegaConf

    if fresh or not os.environ.get(SUFFIX_ENV):
        os.environ[SUFFIX_ENV] = secrets.token_hex(3)
    if not OmegaConf.has_resolver("privtrain_unique"):
        OmegaConf.register_new_resolver("privtrain_unique", lambda: os.environ.get(SUFFIX_ENV) or "x")
    if not OmegaConf.has_resolver("by_privacy"):
        OmegaConf.register_new_resolver("by_privacy", by_privacy)


def by_privacy(central, local, both, *, _root_):
    """``${by_privacy:A,B,C}`` in configs/federated.yaml: A under privacy=central or none, B under privacy=dp
    (local DP in each client), C under privacy=central_local. Client-level DP needs a crowd of clients;
    local DP needs clients with many rows: one default population cannot serve both."""
    name = _root_.get("privacy", {}).get("name") if _root_.get("privacy") is not None else None
    return local if name == "dp" else both if name == "central_local" else central


def compose(recipe: str, overrides: list[str] | tuple[str, ...] = ()):
    """Compose ``configs/<recipe>.yaml`` with Hydra overrides; bad input is a UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_recipe(recipe)
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base=None):
            cfg = hydra_compose(config_name=recipe, overrides=list(overrides))
    except Exception as exc:  # Hydra raises several types for bad overrides
        raise UserError(_hydra_message(exc, recipe)) from None
    finally:
        GlobalHydra.instance().clear()
    from privtrain.config.resume import resumed

    return resumed(cfg, overrides)  # resume=: the dataset and model default to the checkpoint's run


def validate_overrides(recipe: str, overrides: list[str]) -> None:
    """Compose every value of every sweep once, so a bad choice fails before Hydra runs.

    Hydra's own errors print several lines and exit 1; this gives one line and exit 2.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise UserError(_hydra_message(exc, recipe)) from None
    base, sweeps = [], []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            values = [str(v) for v in override.sweep_string_iterator()]
            sweeps.append((override.get_key_element(), values))
            base.append(f"{override.get_key_element()}={values[0]}")
        else:
            base.append(text)
    _settings_of(recipe, base)
    for key, values in sweeps:
        for value in values[1:]:
            _settings_of(recipe, [o if not o.startswith(f"{key}=") else f"{key}={value}" for o in base])


def _settings_of(recipe: str, overrides: list[str]) -> None:
    """Compose and type-check: a value of the wrong type fails here, before Hydra starts a run."""
    from privtrain.config.settings import check_types

    check_types(recipe, compose(recipe, overrides))


_NOT_A_SETTING = {
    "privacy.unit": "the unit of privacy follows from the mechanism (example for DP-SGD and synthesizers, "
    "client for central DP-FedAvg); it is not a setting",
    "dataset.name": "dataset.name became dataset.loader (csv, parquet, digits, ...) and dataset.source "
    "(the people a budget protects)",
    "synth.model": "choose the synthesizer with synth=NAME (e.g. synth=ctgan); its settings are synth.KEY",
}


def _hydra_message(exc: BaseException, recipe: str) -> str:
    text = " ".join(str(exc).split())
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = groups().get(group, [])
        return f"{group}={option} is unknown; choose one of {', '.join(options)}."
    override = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text)
    if override:
        return unknown_key_message(override.group(1), recipe)
    grammar = re.search(r"(?:LexerNoViableAltException|mismatched input|no viable alternative)[^:]*:?\s*(.*?) \^", text)
    if grammar or "override_grammar" in text:
        what = grammar.group(1).strip() if grammar else "an override"
        return (
            f"{what!r} is not valid override syntax; write key=value, and quote a value with spaces or symbols, "
            "e.g. 'dataset.source=\"my data\"' (see privtrain run --help)."
        )
    return text.replace("Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "").strip()


def unknown_key_message(key: str, recipe: str, known: list[str] | None = None) -> str:
    """One line for a key the recipe does not have, with the close matches (never a hint to add it)."""
    if key in _NOT_A_SETTING:
        return f"{key} is not a setting: {_NOT_A_SETTING[key]}."
    if known is None:
        try:
            known = _keys(compose(recipe, []))
        except UserError:
            known = []
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"{key} is not a setting of the {recipe} recipe{hint} (see them all with: privtrain run {recipe} --cfg job)"


def _keys(cfg, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    out = []
    for k in cfg.keys():
        path = f"{prefix}{k}"
        out.append(path)
        node = cfg._get_node(k)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            out.extend(_keys(node, path + "."))
    return out


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain dicts and lists (missing values left as ``"???"``).

    Args:
        cfg: a composed config (a mapping at the top).

    Returns:
        The config as a plain ``dict``.

    Raises:
        TypeError: ``cfg`` is not a mapping (a bug: composed configs always are).
    """
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if not isinstance(data, dict):
        raise TypeError(f"a composed config is a mapping, not {type(data).__name__}")
    return data


def config_hash(cfg) -> str:
    """SHA-256 of the resolved config (Hydra's own runtime section excluded)."""
    data = {k: v for k, v in to_container(cfg).items() if k != "hydra"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def missing_keys(cfg) -> list[str]:
    from omegaconf import OmegaConf

    return sorted(OmegaConf.missing_keys(cfg))


def to_yaml(cfg) -> str:
    """The resolved config as YAML (what a run writes to ``config.yaml``)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=True)
