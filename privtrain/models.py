"""Models that Opacus can train: logistic regression, an MLP and a small CNN.

Every model takes flat feature vectors; the CNN reshapes them to its image
shape itself. The CNN uses GroupNorm, since BatchNorm mixes examples in a batch
and breaks per-example gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from privtrain.errors import UserError

MODELS = ("logreg", "mlp", "cnn")
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


@dataclass(frozen=True)
class ModelSpec:
    """What ``model.*`` in the config says."""

    name: str
    hidden: tuple[int, ...] = (128,)
    activation: str = "tanh"
    channels: tuple[int, ...] = (16, 32)
    groups: int = 4
    target: str | None = None  # model=custom: ``model._target_``, a torch.nn.Module subclass or factory
    kwargs: dict = field(default_factory=dict)  # model=custom: its keyword arguments
    fix: bool = False  # model=custom: apply Opacus' ModuleValidator.fix before training
    pretrained: dict | None = None  # model=pretrained: privtrain.pretrained.spec.PretrainedSpec.to_dict()

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        d = dict(d)
        d.pop("loaded", None)  # run.json's record of a pretrained model's weights (models.record)
        for key in ("hidden", "channels"):
            d[key] = tuple(d.get(key) or ())
        return cls(**d)


def build(spec: ModelSpec, *, n_inputs: int, n_classes: int, image_shape: tuple[int, ...] | None) -> nn.Module:
    """Instantiate the model named by ``spec`` for the given data shape.

    Raises:
        UserError: unknown model or activation, or a CNN on non-image data.
    """
    if spec.pretrained is not None:  # local weights, frozen but for what model.finetune trains
        from privtrain.pretrained import build as pretrained
        from privtrain.pretrained import spec as pretrained_spec

        return pretrained.build(
            pretrained_spec.from_dict(spec.pretrained), n_inputs=n_inputs, n_classes=n_classes, image_shape=image_shape
        )
    if spec.target is not None:
        return _custom(spec, spec.target, n_inputs=n_inputs, n_classes=n_classes, image_shape=image_shape)
    if spec.name not in MODELS:
        raise UserError(f"model={spec.name!r} is unknown; choose one of {', '.join(MODELS)}.")
    if spec.activation not in _ACTIVATIONS:
        raise UserError(f"model.activation={spec.activation!r} is unknown; choose one of {', '.join(_ACTIVATIONS)}.")
    act = _ACTIVATIONS[spec.activation]
    if spec.name == "logreg":
        return nn.Sequential(nn.Linear(n_inputs, n_classes))
    if spec.name == "mlp":
        layers: list[nn.Module] = []
        width = n_inputs
        for h in spec.hidden:
            layers += [nn.Linear(width, int(h)), act()]
            width = int(h)
        return nn.Sequential(*layers, nn.Linear(width, n_classes))
    if image_shape is None:
        raise UserError("model=cnn needs image data (dataset=digits); use model=mlp or model=logreg for tables.")
    return _cnn(spec, image_shape, n_classes, act)


def _cnn(spec: ModelSpec, image_shape: tuple[int, ...], n_classes: int, act: type[nn.Module]) -> nn.Module:
    channels_in, height, width = image_shape
    layers: list[nn.Module] = [nn.Unflatten(1, tuple(image_shape))]
    for c in spec.channels:
        if c % spec.groups:
            raise UserError(f"model.channels={list(spec.channels)} must be multiples of model.groups={spec.groups}.")
        layers += [
            nn.Conv2d(channels_in, int(c), 3, padding=1),
            nn.GroupNorm(spec.groups, int(c)),
            act(),
            nn.AvgPool2d(2),
        ]
        channels_in, height, width = int(c), height // 2, width // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels_in * height * width, n_classes))


def _custom(spec: ModelSpec, target: str, **shape) -> nn.Module:
    """A user's module from ``model._target_``; privtrain passes the data's shape when the constructor asks."""
    import inspect

    from privtrain.data.custom import import_object

    factory = import_object(target, "model._target_")
    kwargs = dict(spec.kwargs)
    try:
        params = inspect.signature(factory).parameters
        kwargs.update({k: v for k, v in shape.items() if k in params and k not in kwargs})
        model = factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"model._target_={spec.target}: {exc}; check its keyword arguments (+model.NAME=VALUE)."
        ) from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model._target_={spec.target} returned a {type(model).__name__}, not a torch.nn.Module.")
    if spec.fix:
        from opacus.validators import ModuleValidator

        model = ModuleValidator.fix(_one_group_norms(model))
    return model


def _one_group_norms(model: nn.Module) -> nn.Module:
    """Replace each ``BatchNorm1d`` by ``GroupNorm(1, C)``, before Opacus fixes the rest.

    Opacus swaps every BatchNorm for ``GroupNorm(min(32, C), C)``. On the (batch, C) inputs of a
    BatchNorm1d, a group of one channel normalises a single number to 0: with C <= 32 the layer then
    outputs a constant and the model learns nothing (0.07 on digits). One group normalises each example's
    C features together (a LayerNorm with an affine per channel), which DP-SGD can train.
    """
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm1d):
            setattr(model, name, nn.GroupNorm(1, child.num_features, eps=child.eps, affine=child.affine))
        else:
            _one_group_norms(child)
    return model


def describe(model: nn.Module, spec: ModelSpec) -> str:
    """The model as a reviewer reads it: its real class, its parameter count, and whether Opacus fixed it."""
    if spec.pretrained is not None:
        from privtrain.pretrained.build import describe as describe_pretrained

        return describe_pretrained(model)
    cls = type(model)
    name = f"{cls.__module__}.{cls.__qualname__}" if spec.target else spec.name
    fixed = (
        (
            "; Opacus' ModuleValidator.fix replaced layers it cannot train privately (model.fix=true; "
            "BatchNorm1d became GroupNorm with one group)"
        )
        if spec.fix
        else ""
    )
    return f"`{name}` ({count_parameters(model):,} parameters){fixed}"


def record(model: nn.Module, spec: ModelSpec) -> dict:
    """``spec`` for run.json, with what a pretrained model loaded and trained (name, weights' SHA-256, counts)."""
    from privtrain.pretrained.build import info

    loaded = info(model)
    return {**spec.to_dict(), "loaded": loaded} if loaded is not None else spec.to_dict()


def not_covered(model: nn.Module) -> tuple[str, ...]:
    """What the guarantee does not cover because of the model: a pretrained model's weights (a public input)."""
    from privtrain.pretrained.build import NOT_COVERED, info

    return (NOT_COVERED[0].upper() + NOT_COVERED[1:] + ".",) if info(model) is not None else ()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def validate_for_dp(model: nn.Module) -> None:
    """Raise :class:`UserError` if Opacus cannot train ``model`` privately."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise UserError(
            f"model is not trainable with DP-SGD: {errors[0]} ({len(errors)} problem(s) found by Opacus' "
            "ModuleValidator); fix the module, or pass model.fix=true to let Opacus replace those layers."
        )


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
