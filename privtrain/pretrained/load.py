"""Pretrained weights from a local path only: a Hugging Face directory or a torch state dict. Nothing downloads.

A Hugging Face ``transformers`` directory (``config.json`` and its weights) is loaded as
``AutoModelForSequenceClassification`` with one output per declared class, ``local_files_only=True``
and the hub switched offline; a head of another size is initialised afresh from ``seed``
(public randomness). Remote code is never run (``trust_remote_code`` stays off).

A ``.pt``/``.pth`` file is a torch state dict for a network privtrain builds (``model.arch.name``: mlp, cnn,
logreg, or ``custom`` with its ``_target_``), loaded with ``weights_only=True`` (no pickle runs code).
torchvision is not a dependency: a torchvision-style state dict loads into a privtrain architecture, or a
``custom`` module whose state dict has the same names and shapes.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import torch
from torch import nn

from privtrain.data.text import require_llm
from privtrain.errors import UserError, user_paths
from privtrain.pretrained.spec import PretrainedSpec

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
STATE_DICT_SUFFIXES = (".pt", ".pth")


def local_path(spec: PretrainedSpec) -> Path:
    """The model's path, which must exist here: a directory with ``config.json`` or a ``.pt``/``.pth`` file.

    Raises:
        UserError: no such path, or neither format.
    """
    path = Path(spec.path).expanduser()
    with user_paths("model.path"):
        is_dir, is_file = path.is_dir(), path.is_file()
    if not (is_dir or is_file):
        raise UserError(
            f"model.path: no such file or directory {str(path)!r}; point it at a local Hugging Face "
            "directory or a .pt state dict (nothing is downloaded)."
        )
    if is_dir and not (path / "config.json").is_file():
        raise UserError(
            f"model.path={str(path)!r} is a directory without config.json; give a Hugging Face model "
            "directory (save_pretrained) or a .pt state dict."
        )
    if is_file and path.suffix not in STATE_DICT_SUFFIXES:
        raise UserError(
            f"model.path={str(path)!r} is neither a Hugging Face directory nor a torch state dict "
            f"({', '.join(STATE_DICT_SUFFIXES)})."
        )
    return path


def weights_digest(path: Path) -> dict:
    """SHA-256 of the weights, a public input of the run: ``sha256`` is the file's own hash (as ``sha256sum``
    prints it) for one file, else the hash of the ``sha256sum`` listing of all weight files, sorted by name.

    Returns:
        ``{"sha256": ..., "files": {name: sha256}}``.
    """
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise UserError(f"model.path={str(path)!r} holds no weights ({', '.join(WEIGHT_SUFFIXES)}).")
    hashes = {}
    for file in files:
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        hashes[file.name] = h.hexdigest()
    if len(hashes) == 1:
        return {"sha256": next(iter(hashes.values())), "files": hashes}
    listing = "".join(f"{digest}  {name}\n" for name, digest in hashes.items())
    return {"sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": hashes}


class SequenceClassifier(nn.Module):
    """A Hugging Face classifier on privtrain's inputs: each row is ``(2, max_length)`` int64, token ids over
    the attention mask (:mod:`privtrain.data.text`), so the training loop passes one tensor as for tables.

    Position and token-type ids are passed with the batch's size: the models' defaults are buffers of batch
    size 1, broadcast in the sum, which Opacus' per-sample gradients of those embeddings cannot follow.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # type: ignore[operator]
        accepted = inspect.signature(base.forward).parameters
        self._positions = "position_ids" in accepted
        self._token_types = "token_type_ids" in accepted and getattr(base.config, "type_vocab_size", 0) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(x):  # an empty Poisson batch: attention cannot reshape 0 rows, so run one padding row
            # and return none of it; no loss reaches that row, so its per-sample gradient is zero
            pad = x.new_zeros((1, *x.shape[1:]))
            pad[:, 1, 0] = 1  # one attended position: an all-masked row could give NaN activations
            return self.forward(pad)[:0]  # type: ignore[operator]
        ids, mask = x[:, 0].contiguous(), x[:, 1].contiguous()  # Opacus views the ids of an Embedding
        extra = {}
        if self._positions:
            extra["position_ids"] = torch.arange(ids.shape[1], device=ids.device).repeat(ids.shape[0], 1)
        if self._token_types:
            extra["token_type_ids"] = torch.zeros_like(ids)
        return self.model(input_ids=ids, attention_mask=mask, **extra).logits


def load_transformers(path: Path, n_classes: int) -> tuple[nn.Module, str]:
    """(the directory's sequence classifier with ``n_classes`` outputs, its config class's name).

    Raises:
        UserError: the extra is missing, or the directory does not load as a sequence classifier.
    """
    require_llm()  # offline first, then import
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialised head" notes: the card says what trained
    hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        config.num_labels = n_classes
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            config=config,
            local_files_only=True,
            trust_remote_code=False,
            ignore_mismatched_sizes=True,
            dtype=torch.float32,
        )  # Opacus clips in float32
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"model.path={str(path)!r} does not load as a Hugging Face sequence classifier "
            f"({first[:200]}); give a directory written by save_pretrained."
        ) from None
    return model, type(config).__name__


def load_state_dict_model(
    path: Path, arch: dict | None, *, n_inputs: int, n_classes: int, image_shape: tuple[int, ...] | None
) -> tuple[nn.Module, str]:
    """(the privtrain network ``arch`` with the file's weights, a note on what was re-initialised or "").

    A head whose shape differs (pretrained on other classes) is left at its fresh initialisation, as when
    fine-tuning a torchvision network on new classes; every other tensor must match by name and shape.

    Raises:
        UserError: no ``model.arch``, a file that is no state dict, or tensors that do not fit.
    """
    from privtrain import models

    if not arch:
        raise UserError(
            "model.arch.name is required for a .pt state dict: the network it fits, e.g. "
            "model.arch.name=mlp model.arch.hidden=[128] (or custom with model.arch._target_)."
        )
    spec = _arch_spec(dict(arch))
    model = models.build(spec, n_inputs=n_inputs, n_classes=n_classes, image_shape=image_shape)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe file is the user's to fix
        raise UserError(
            f"model.path={str(path)!r} is not a torch state dict that loads safely ({type(exc).__name__})."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"model.path={str(path)!r} is not a plain state dict (name -> tensor); save one with "
            "torch.save(model.state_dict(), path)."
        )
    own = model.state_dict()
    head = _head_names(model)
    resized = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if any(k not in head for k in resized) or set(own) != set(state):
        wrong = sorted(set(own) ^ set(state)) or [k for k in resized if k not in head]
        raise UserError(
            f"model.path={str(path)!r} does not fit model.arch ({spec.name}): tensor {wrong[0]!r} is missing, "
            "extra or of another shape; describe the network the weights came from in model.arch.*."
        )
    model.load_state_dict({k: v for k, v in state.items() if k not in resized}, strict=False)
    note = f"the head ({', '.join(resized)}) had another shape and was initialised afresh" if resized else ""
    return model, note


ARCH_KEYS = {"hidden", "activation", "channels", "groups"}


def _arch_spec(arch: dict):
    """``model.arch`` as a :class:`privtrain.models.ModelSpec`.

    Raises:
        UserError: a key the named network does not take.
    """
    from privtrain import models

    name, target = arch.pop("name"), arch.pop("_target_", None)
    if name == "custom":
        return models.ModelSpec(name=name, hidden=(), channels=(), target=target, kwargs=arch)
    unknown = sorted(set(arch) - ARCH_KEYS)
    if unknown or target is not None:
        raise UserError(
            f"model.arch.{(unknown or ['_target_'])[0]} does not apply to model.arch.name={name}; it takes "
            f"{', '.join(sorted(ARCH_KEYS))} (or name=custom with _target_)."
        )
    return models.ModelSpec.from_dict({"name": name, **arch})


def _head_names(model: nn.Module) -> set[str]:
    """The state-dict names of the last layer with parameters (the classification head)."""
    layers = [(name, m) for name, m in model.named_modules() if list(m.parameters(recurse=False))]
    name, module = layers[-1]
    return {f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)}
