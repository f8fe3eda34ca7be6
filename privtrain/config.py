"""The config layer: where the shipped configs live, and Hydra composition.

Only this module and the CLI know Hydra. Recipes receive the composed config
and turn it into plain values with the ``*_spec`` helpers below, so data,
models, privacy and ledger code never see a config object.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from privtrain.errors import UserError

GROUPS = ("recipe", "dataset", "model", "privacy", "ledger", "fl", "synth", "audit", "experiment")


def config_dir() -> Path:
    """The shipped ``configs/`` folder.

    An installed wheel holds it as ``privtrain/configs`` (setup.py maps it there);
    a source checkout or editable install has it beside the package.
    """
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


def recipes() -> list[str]:
    """Recipe names: the primary config files at the top of ``configs/``."""
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def groups() -> dict[str, list[str]]:
    """Each config group with its options."""
    root = config_dir()
    return {
        g: sorted(p.stem for p in (root / g).glob("*.yaml"))
        for g in GROUPS
        if (root / g).is_dir()
    }


def check_recipe(name: str) -> None:
    if name not in recipes():
        raise UserError(f"recipe {name!r} is unknown; choose one of {', '.join(recipes())} (see `privtrain ls`).")


def compose(recipe: str, overrides: list[str] | tuple[str, ...] = ()):
    """Compose ``configs/<recipe>.yaml`` with Hydra overrides; bad input is a UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_recipe(recipe)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base=None):
            return hydra_compose(config_name=recipe, overrides=list(overrides))
    except Exception as exc:  # Hydra raises several types for bad overrides
        raise UserError(_hydra_message(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def validate_overrides(recipe: str, overrides: list[str]) -> None:
    """Compose every value of every sweep once, so a bad choice fails before Hydra runs.

    Hydra's own errors print several lines and exit 1; this gives one line and exit 2.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise UserError(_hydra_message(exc)) from None
    base, sweeps = [], []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            values = [str(v) for v in override.sweep_string_iterator()]
            sweeps.append((override.get_key_element(), values))
            base.append(f"{override.get_key_element()}={values[0]}")
        else:
            base.append(text)
    compose(recipe, base)
    for key, values in sweeps:
        for value in values[1:]:
            compose(recipe, [o if not o.startswith(f"{key}=") else f"{key}={value}" for o in base])


def _hydra_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = groups().get(group, [])
        return f"{group}={option} is unknown; choose one of {', '.join(options)}."
    return text.replace("Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "").strip()


def to_container(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def config_hash(cfg) -> str:
    """SHA-256 of the resolved config (Hydra's own runtime section excluded)."""
    data = {k: v for k, v in to_container(cfg).items() if k != "hydra"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def missing_keys(cfg) -> list[str]:
    from omegaconf import OmegaConf

    return sorted(OmegaConf.missing_keys(cfg))


# --- plain values for the layers below ---------------------------------------


def plain(node):
    """A config node as plain dicts/lists (resolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def dataset_spec(node):
    from privtrain.data import DatasetSpec

    d = plain(node)
    return DatasetSpec(
        name=d["name"], path=d["path"], target=d["target"],
        features=tuple(d["features"]) if d["features"] else None,
        schema=d["schema"], infer_schema=bool(d["infer_schema"]), test_size=float(d["test_size"]),
    )


def model_spec(node):
    from privtrain.models import ModelSpec

    m = plain(node)
    return ModelSpec(name=m["name"], hidden=tuple(m["hidden"] or ()), activation=m["activation"],
                     channels=tuple(m["channels"] or ()), groups=int(m["groups"]))


def train_settings(node, n_train: int):
    """The recipe's training settings for ``n_train`` training rows.

    ``recipe.epochs: null`` (the default) trains ``recipe.steps`` optimizer steps, rounded up to whole
    epochs: a fixed number of epochs would give a 455-row table a quarter of the steps of a
    1,437-row one at the same batch size. An explicit ``recipe.epochs`` wins.
    """
    from privtrain.training import TrainSettings

    r = plain(node)
    batch_size = int(r["batch_size"])
    epochs = r.get("epochs")
    if epochs is None:
        steps = r.get("steps")
        if steps is None or int(steps) < 1:
            raise UserError(f"recipe.steps={steps} must be at least 1 (or set recipe.epochs).")
        per_epoch = max(1, math.ceil(n_train / max(1, batch_size)))
        epochs = math.ceil(int(steps) / per_epoch)
    return TrainSettings(
        epochs=int(epochs), batch_size=batch_size,
        max_physical_batch_size=int(r["max_physical_batch_size"]), optimizer=r["optimizer"],
        lr=float(r["lr"]), momentum=float(r["momentum"]), ema=float(r["ema"]),
        grad_sample_mode=r["grad_sample_mode"], clipping=r["clipping"], progress=bool(r["progress"]),
        threads=int(r.get("threads", 1)),  # run configs written before this key existed
    )


def default_budget(node) -> tuple[float, float] | None:
    b = plain(node)
    if not b or b.get("epsilon") is None:
        return None
    if b.get("delta") is None:
        raise UserError("ledger.default_budget.delta is missing; set it with the epsilon, e.g. ledger.default_budget.delta=1e-5.")
    return float(b["epsilon"]), float(b["delta"])
