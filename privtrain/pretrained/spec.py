"""``model=pretrained``'s settings: the local path, the architecture of a state dict, and the fine-tuning mode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from privtrain.errors import UserError

MODES = ("all", "last_k", "lora")
ARCHS = ("logreg", "mlp", "cnn", "custom")


@dataclass(frozen=True)
class LoraSpec:
    """``model.lora.*``: peft's LoraConfig (Hu et al. 2021); ``target_modules`` None: peft's default for the
    model type (e.g. BERT's query and value projections)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PretrainedSpec:
    """What ``model.*`` says for ``model=pretrained``.

    Attributes:
        path: a Hugging Face ``transformers`` directory (``config.json`` and weights), or a ``.pt`` state dict.
        finetune: ``all``, ``last_k`` or ``lora``: which parameters train (the rest is frozen).
        last_k: ``last_k`` mode: how many of the last layers (transformer blocks; parametrised layers of a
            privtrain network) train, besides the head and what follows the blocks.
        lora: ``lora`` mode's settings.
        arch: a state dict's network: ``model.arch.name`` (mlp, cnn, logreg or custom) and its settings
            (``hidden``, ``activation``, ``channels``, ``groups`` or ``_target_`` and keyword arguments).
    """

    path: str
    finetune: str = "lora"
    last_k: int = 2
    lora: LoraSpec = field(default_factory=LoraSpec)
    arch: dict | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["lora"]["target_modules"] = list(self.lora.target_modules) if self.lora.target_modules else None
        return out


def _int(value, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{key}={value!r} must be a whole number >= {minimum}.")
    return value


def _num(value, key: str, low: float, high: float | None = None) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < low
        or (high is not None and value >= high)
    ):
        bound = f"in [{low:g}, {high:g})" if high is not None else f">= {low:g}"
        raise UserError(f"{key}={value!r} must be a number {bound}.")
    return float(value)


def from_mapping(node: dict) -> PretrainedSpec:
    """The checked spec of the ``model`` node of a composed config.

    Raises:
        UserError: a missing path, an unknown mode, or a LoRA setting out of range.
    """
    unknown = sorted(set(node) - {"name", "path", "finetune", "last_k", "lora", "arch"})
    if unknown:
        raise UserError(
            f"model.{unknown[0]} is unknown for model=pretrained; it takes path, finetune, last_k, "
            "lora.*, arch.* (docs/pretrained.md)."
        )
    path = node.get("path")
    if not path or not isinstance(path, str):
        raise UserError(
            "model.path is required for model=pretrained: a local Hugging Face directory or a .pt state "
            "dict, e.g. model.path=/models/bert-tiny (nothing is downloaded)."
        )
    finetune = node.get("finetune", "lora")
    if finetune not in MODES:
        raise UserError(f"model.finetune={finetune!r} is unknown; choose one of {', '.join(MODES)}.")
    lora = dict(node.get("lora") or {})
    unknown = sorted(set(lora) - {"r", "alpha", "dropout", "target_modules"})
    if unknown:
        raise UserError(f"model.lora.{unknown[0]} is unknown; model.lora takes r, alpha, dropout, target_modules.")
    targets = lora.get("target_modules")
    if targets is not None and (
        not isinstance(targets, (list, tuple)) or not targets or not all(isinstance(t, str) for t in targets)
    ):
        raise UserError(f"model.lora.target_modules={targets!r} must list module names, e.g. [query,value] (or null).")
    lora_spec = LoraSpec(
        r=_int(lora.get("r", 8), "model.lora.r", 1),
        alpha=_num(lora.get("alpha", 16), "model.lora.alpha", 0),
        dropout=_num(lora.get("dropout", 0.0), "model.lora.dropout", 0.0, 1.0),
        target_modules=tuple(targets) if targets else None,
    )
    arch = node.get("arch")
    if arch is not None:
        if not isinstance(arch, dict) or arch.get("name") not in ARCHS:
            raise UserError(
                f"model.arch.name={(arch or {}).get('name') if isinstance(arch, dict) else arch!r}: a "
                f"state dict's network is one of {', '.join(ARCHS)} (model.arch.name=mlp "
                "model.arch.hidden=[128])."
            )
        arch = dict(arch)
    return PretrainedSpec(
        path=path, finetune=finetune, last_k=_int(node.get("last_k", 2), "model.last_k", 0), lora=lora_spec, arch=arch
    )


def from_dict(d: dict) -> PretrainedSpec:
    """The spec back from :meth:`PretrainedSpec.to_dict` (a checkpoint's or run.json's ``model``)."""
    return from_mapping(d)
