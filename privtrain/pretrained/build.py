"""Build ``model=pretrained``: load the local weights, freeze what does not train, and record what was done."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from privtrain.pretrained import load, modes
from privtrain.pretrained.spec import PretrainedSpec

INFO = "_privtrain_pretrained"  # the attribute that carries the record on the built module
NOT_COVERED = (
    "the pretrained weights are a public input (SHA-256 above): the privacy guarantee covers only the "
    "fine-tuning data, not whatever the weights were trained on"
)


def build(spec: PretrainedSpec, *, n_inputs: int, n_classes: int, image_shape: tuple[int, ...] | None) -> nn.Module:
    """The pretrained model, ready for (DP) fine-tuning; :func:`info` reads what was loaded and what trains.

    Raises:
        UserError: a missing or unreadable path, a missing ``.[llm]`` extra, or a bad mode (before any charge).
    """
    path = load.local_path(spec)
    transformers = path.is_dir()
    model: nn.Module
    if transformers:
        hf_model, config_class = load.load_transformers(path, n_classes)
        model = load.SequenceClassifier(modes.apply(hf_model, spec, transformers=True))
        kind, note = "transformers", ""
    else:
        net, note = load.load_state_dict_model(
            path, spec.arch, n_inputs=n_inputs, n_classes=n_classes, image_shape=image_shape
        )
        model = modes.apply(net, spec, transformers=False)
        config_class, kind = f"privtrain {(spec.arch or {}).get('name')}", "state_dict"
    trainable, total = modes.counts(model)
    record = {
        "name": Path(spec.path).name,
        "path": str(path),
        "format": kind,
        "config_class": config_class,
        "weights": load.weights_digest(path),
        "finetune": spec.finetune,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "note": note,
    }
    if spec.finetune == "last_k":
        record["last_k"] = spec.last_k
    if spec.finetune == "lora":
        record["lora"] = spec.to_dict()["lora"]
    setattr(model, INFO, record)
    return model


def info(model: nn.Module) -> dict | None:
    """The record :func:`build` attached (None: not a pretrained model)."""
    return getattr(model, INFO, None)


def describe(model: nn.Module) -> str:
    """The model card's model line: the model, what trained, and the weights' hash (what the guarantee does not
    cover is listed by :func:`privtrain.models.not_covered`)."""
    r = info(model)
    if r is None:
        return ""
    mode = {
        "all": "all layers",
        "last_k": f"the last {r.get('last_k')} layer(s) and the head",
        "lora": "LoRA adapters (r={r}, alpha={alpha:g}) and the head".format(**r.get("lora") or {"r": "?", "alpha": 0}),
    }[r["finetune"]]
    trained = r["trainable_parameters"]
    share = trained / r["total_parameters"] if r["total_parameters"] else 0.0
    extra = f"; {r['note']}" if r["note"] else ""
    frozen = ", the rest frozen" if trained < r["total_parameters"] else ""
    return (
        f"pretrained `{r['name']}` ({r['config_class']}, {r['format']}), fine-tuned: {mode}, "
        f"{trained:,} of {r['total_parameters']:,} parameters trained ({share:.2%}){frozen}; "
        f"pretrained weights SHA-256 `{r['weights']['sha256']}` (a public input){extra}"
    )
