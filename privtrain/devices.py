"""Where training runs: ``device=auto|cpu|cuda`` (and ``cuda:N``), and mixed precision.

``auto`` picks the GPU when PyTorch sees one (under torchrun, the process's own ``LOCAL_RANK``),
else the CPU. Mixed precision (``recipe.amp=true``) is bfloat16 autocast for the forward pass: Opacus
computes per-sample gradients for the hooks and functorch modes under it; privtrain upcasts them so
that Opacus clips in float32 (:mod:`privtrain.privacy.opacus_parts`) and adds noise in the
parameters' float32. Ghost clipping under AMP is refused (its norms are bfloat16). No loss scaling is
needed with bfloat16, so none is used.
"""

from __future__ import annotations

import os

from privtrain.errors import UserError

CHOICES = ("auto", "cpu", "cuda")


def check(device: str) -> None:
    """Refuse a device name that is not one of ours, before anything else happens."""
    if device not in CHOICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UserError(f"device={device!r} is unknown; choose auto, cpu, cuda or cuda:N.")


def resolve(device: str):
    """The ``torch.device`` to train on. Raises :class:`UserError` for a GPU that is not there."""
    import torch

    check(device)
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(
            f"device={device}: PyTorch sees no CUDA GPU here (torch {torch.__version__}); use device=cpu "
            "or device=auto."
        )
    index = int(device[5:]) if ":" in device else int(os.environ.get("LOCAL_RANK", 0))
    if index >= torch.cuda.device_count():
        raise UserError(
            f"device={device}: this machine has {torch.cuda.device_count()} GPU(s); use cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1}."
        )
    return torch.device("cuda", index)


def check_amp(device) -> None:
    import torch

    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("recipe.amp=true uses bfloat16, which this GPU does not support; pass recipe.amp=false.")


def autocast(device, enabled: bool):
    """The forward pass's mixed-precision context (a no-op unless ``enabled``)."""
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
