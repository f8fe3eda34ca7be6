"""A resume needs only ``resume=``: the dataset and model settings default to the checkpoint's run.

``privtrain run dp_sgd resume=outputs/.../checkpoint.pt`` continues a run. Without this module it would
compose the recipe's default dataset and model, and the user would have to repeat every ``dataset.*`` and
``model.*`` override of the original run. So when the config names a checkpoint, its run's resolved
``config.yaml`` (written beside it, hashed in the ledger with the checkpoint) supplies the ``dataset`` and
``model`` groups, unless the user chose the group (``dataset=...``, ``model=...``): then the user's choice
stands as composed. The user's ``dataset.KEY=...`` / ``model.KEY=...`` overrides apply on top of the
checkpoint's run's settings (e.g. ``dataset.path=`` for a file that moved).

Nothing here is trusted: the recipe still loads the checkpoint only once its ledger holds its hash, and
refuses it (one line, nothing charged) unless the table actually read has the checkpoint's fingerprint and
the model is the checkpoint's (:mod:`privtrain.runs.resume`). A user's explicit choice that contradicts the
checkpoint is refused there too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

GROUPS = ("dataset", "model")  # what a resume takes from the checkpoint's run unless the user chose it


def resumed(cfg, overrides: Sequence[str]):
    """``cfg`` with the ``dataset`` and ``model`` groups of the checkpoint's run, where the user chose neither.

    Args:
        cfg: a composed config.
        overrides: the user's overrides, as given (``dataset=csv``, ``dataset.path=x.csv``, ``+dataset.k=v``).

    Returns:
        ``cfg``, changed in place (unchanged without ``resume=``, or when no ``config.yaml`` lies beside the
        checkpoint: the recipe then refuses the resume in its own words).
    """
    from omegaconf import DictConfig, OmegaConf, open_dict

    path = cfg.get("resume") if isinstance(cfg, DictConfig) and "resume" in cfg else None
    saved = _saved_config(Path(str(path)).expanduser().parent / "config.yaml") if path else None
    if saved is None:
        return cfg
    given = _keys(overrides)
    for group in GROUPS:
        if group not in cfg or not isinstance(saved.get(group), dict) or group in given:
            continue  # the user chose the group: their choice stands (and is checked against the checkpoint)
        node = OmegaConf.create(saved[group])
        for key in given:
            if key.startswith(f"{group}."):
                sub = key[len(group) + 1 :]
                value = OmegaConf.select(cfg, key, default=None)
                if isinstance(value, (DictConfig, list)) or OmegaConf.is_config(value):
                    value = OmegaConf.to_container(value, resolve=True)
                OmegaConf.update(node, sub, value, merge=False, force_add=True)
        with open_dict(cfg):
            cfg[group] = node
    return cfg


def _keys(overrides: Sequence[str]) -> set[str]:
    """The keys (or groups) the user's overrides set, without Hydra's ``+``, ``++`` or ``~`` prefixes."""
    out = set()
    for text in overrides:
        key = text.split("=", 1)[0].lstrip("+~").strip()
        out.add(key.split("@", 1)[0])
    return out


def _saved_config(file: Path) -> dict | None:
    """The resolved config a run wrote (plain values), or None when there is none that reads as YAML."""
    from omegaconf import OmegaConf

    if not file.is_file():
        return None
    try:
        data = OmegaConf.to_container(OmegaConf.load(file), resolve=False)
    except Exception:  # noqa: BLE001 - not a run's config: the recipe's checks refuse the resume in one line
        return None
    return data if isinstance(data, dict) else None
