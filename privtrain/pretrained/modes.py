"""Which parameters train: ``model.finetune=all|last_k|lora``. Everything else has ``requires_grad=False``.

Opacus builds per-sample gradients, clips and adds noise for trainable parameters only (its
``trainable_modules``/``trainable_parameters`` skip frozen ones, in hooks and ghost mode alike), so a
frozen weight never enters the mechanism and stays bit-identical: it is the public pretrained value.

- ``all``: every parameter (Li et al. 2021: full fine-tuning with ghost clipping).
- ``last_k``: a transformer's last ``k`` blocks (the longest ``nn.ModuleList``, e.g. ``bert.encoder.layer``)
  and every parameter registered after them (pooler, final norm, classification head); ``k=0`` trains
  those alone. For a privtrain network, its last ``k`` layers with parameters (k >= 1, the head included).
- ``lora``: peft's LoRA adapters (Yu et al. 2021) on ``model.lora.target_modules`` (peft's default for the
  model type when null) and the classification head (peft's ``modules_to_save`` for sequence
  classification); the pretrained weights stay frozen.
"""

from __future__ import annotations

from torch import nn

from privtrain.errors import UserError
from privtrain.pretrained.spec import PretrainedSpec


def apply(model: nn.Module, spec: PretrainedSpec, *, transformers: bool) -> nn.Module:
    """``model`` with only the parameters of ``spec.finetune`` trainable (a peft model for ``lora``).

    Raises:
        UserError: ``last_k`` larger than the model's layers, or LoRA on a model peft cannot adapt.
    """
    if spec.finetune == "all":
        model.requires_grad_(True)
        return model
    if spec.finetune == "last_k":
        names = _last_k_transformer(model, spec.last_k) if transformers else _last_k_layers(model, spec.last_k)
        for name, p in model.named_parameters():
            p.requires_grad_(name in names)
        return model
    if not transformers:
        raise UserError(
            "model.finetune=lora applies to Hugging Face directories; for a .pt state dict use "
            "model.finetune=all or last_k."
        )
    return _lora(model, spec)


def _last_k_transformer(model: nn.Module, k: int) -> set[str]:
    blocks_name, blocks = max(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList)),
        key=lambda item: len(item[1]),
        default=(None, None),
    )
    if blocks is None:
        raise UserError(
            "model.finetune=last_k: this model has no list of layers (nn.ModuleList) to count from; "
            "use model.finetune=all or lora."
        )
    if k > len(blocks):
        raise UserError(
            f"model.last_k={k}: the model has {len(blocks)} layers ({blocks_name}); choose 0..{len(blocks)}."
        )
    names = [n for n, _ in model.named_parameters()]
    prefix = f"{blocks_name}."
    in_blocks = [i for i, n in enumerate(names) if n.startswith(prefix)]
    start = (
        in_blocks[-1] + 1
        if k == 0
        else next(i for i, n in enumerate(names) if n.startswith(f"{prefix}{len(blocks) - k}."))
    )
    return set(names[start:])


def _last_k_layers(model: nn.Module, k: int) -> set[str]:
    layers = [(n, m) for n, m in model.named_modules() if list(m.parameters(recurse=False))]
    if not 1 <= k <= len(layers):
        raise UserError(
            f"model.last_k={k}: the network has {len(layers)} layers with parameters; choose "
            f"1..{len(layers)} (1: the head only)."
        )
    return {f"{n}.{p}" if n else p for n, m in layers[-k:] for p, _ in m.named_parameters(recurse=False)}


def _lora(model: nn.Module, spec: PretrainedSpec) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    lora = spec.lora
    # peft types lora_alpha as int but scales by alpha / r: a float alpha works
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) if lora.target_modules else None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # peft: no default targets for this model type, or targets not found
        first = str(exc).strip().splitlines()[0]
        raise UserError(
            f"model.lora.target_modules: peft cannot place LoRA adapters ({first[:200]}); name the "
            "linear layers to adapt, e.g. model.lora.target_modules=[query,value]."
        ) from None


def counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a peft model's frozen copy of its head is not counted twice."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
