"""Canaries for the one-run audit, and the probes it hands to :func:`privtrain.training.train`.

**White-box (Dirac) canaries are training rows.** The audited model is wrapped in :class:`CanaryModel`,
which adds a block of ``nn.Linear(m, 1, bias=False)`` tensors whose output is ``c - c.detach()``: zero
in value (the model computes exactly what it computed before) but with gradient. Each training row
carries one more input column, its canary id: 0 for a real row, j + 1 for canary j. For a canary row
the model's logits are (c, 0, ..., 0) with label 1, so its cross-entropy gradient is 1/K in c and
zero everywhere else (``torch.where`` cuts the base model off), and its per-sample gradient is
``norm`` · e_j in every canary tensor; for a real row the canary input is zero, so is that gradient.

So a canary goes through *everything* a real row goes through: the Poisson sampler the loader really
uses (at whatever rate it really samples), Opacus' per-sample gradients (hooks, functorch or ghost
norms), its clipping (``norm`` = 2 C, so a canary counts only as much as clipping lets it), its
noise, and its divisor. Canary j's coordinate is touched by nothing else.

:class:`DiracObserver` chains itself to the DP optimizer's step hook (after clipping, noise and
scaling, beside the accountant's own hook) and records the canary block of every noisy update,
normalised so that a sampled canary adds 1. :class:`MechanismProbe` records what the built parts
say the mechanism is (sampling rate, divisor, steps, noise, clipping) and stops before the first step.

Per-layer clipping splits C over every parameter tensor: P real tensors and k canary tensors get
C/√(P + k) each. A canary confined to one tensor would move the update by C/√(P + 1) only; the
block therefore has k = 9 P tensors for ``per_layer``, so a canary's clipped norm is √(k/(P+k)) C ≈ 0.95 C.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
from torch import nn

CANARY_LABEL = 1
NORM_OVER_CLIP = 2.0  # a canary's gradient norm is 2 C before clipping: unclipped, it would count twice


class StopTraining(Exception):
    """Raised from the step hook once an observer has seen enough steps (the replay run)."""


class Probed(Exception):
    """Raised by :class:`MechanismProbe` before the first step: the parts were built and recorded."""


class CanaryModel(nn.Module):
    """``base`` plus Dirac canaries; its input is ``base``'s features and one more column, the canary id.

    A canary row must carry the label :data:`CANARY_LABEL`: then its gradient is +``norm`` e_j (with label 0 it
    would point the other way and be twice as long).

    Args:
        base: the configured model.
        n_canaries: m, the canaries' coordinates in every canary tensor.
        n_classes: K, the width of ``base``'s logits.
        tensors: k canary tensors (1 for flat clipping; see the module docstring for per-layer).
        norm: a canary row's per-sample gradient norm in each canary tensor, before clipping.
    """

    def __init__(self, base: nn.Module, n_canaries: int, n_classes: int, *, tensors: int = 1, norm: float = 1.0):
        super().__init__()
        self.base = base
        self.n_canaries, self.n_classes = n_canaries, n_classes
        layers = [nn.Linear(n_canaries, 1, bias=False) for _ in range(tensors)]
        for layer in layers:
            nn.init.zeros_(layer.weight)
        self.canary = nn.ModuleList(layers)
        # d CE / d c = 1/K at uniform logits, so an input of norm * K gives a gradient of norm `norm`.
        self.scale = float(norm) * n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x[:, -1].round().long()
        logits = self.base(x[:, :-1])
        u = nn.functional.one_hot(ids, self.n_canaries + 1)[:, 1:].to(x.dtype) * self.scale
        c = sum(layer(u) for layer in self.canary)
        c = c - c.detach()  # value 0: the canaries never change what the model computes
        canary_logits = nn.functional.pad(c, (0, self.n_classes - 1)).to(logits.dtype)
        return torch.where((ids > 0)[:, None], canary_logits, logits)


def canary_tensors(clipping: str, base: nn.Module) -> int:
    """k: 1 for flat clipping, 9 per real parameter tensor for per-layer clipping (module docstring)."""
    if clipping != "per_layer":
        return 1
    return 9 * sum(1 for p in base.parameters() if p.requires_grad)


def with_ids(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``x`` with the canary-id column appended (float32, like the features)."""
    return np.concatenate([x.astype(np.float32), ids.astype(np.float32)[:, None]], axis=1)


def _sampler_rate(loader) -> float:
    return float(loader.batch_sampler.sample_rate)


def _grad(param: torch.Tensor) -> torch.Tensor:
    """The noisy gradient the optimizer step left in ``param``.

    Raises:
        RuntimeError: it has none (the step did not touch the canary tensors).
    """
    if param.grad is None:
        raise RuntimeError("a canary tensor has no gradient at the optimizer step; the audit cannot observe it")
    return param.grad


class DiracObserver:
    """The instrument of a white-box run: records every noisy update's canary block.

    After the run, ``observations`` is a (steps, m) array: x_tj = (divisor / Σ_l c_l) Σ_l g_tlj, where g
    is the canary block of the noisy, scaled gradient, the divisor is the one the optimizer was built
    with and c_l is what clipping leaves of a canary in tensor l. For correct code x_tj = b_tj + N(0, σ_eff²).

    Args:
        model: the :class:`CanaryModel` being trained.
        stop_after: raise :class:`StopTraining` after this many steps (the replay), or None.
        on_step: called after every recorded step (the progress bar).
    """

    def __init__(self, model: CanaryModel, *, stop_after: int | None = None, on_step=None) -> None:
        self.model = model
        # nn.ModuleList is not generic: its items are typed nn.Module, these are the nn.Linear layers above.
        self.params = [cast(nn.Linear, layer).weight for layer in model.canary]
        self.stop_after, self.on_step = stop_after, on_step
        self.rows: list[np.ndarray] = []
        self.built: dict = {}

    def __call__(self, model, optimizer, loader, *, steps: int, rows: int) -> None:
        index = {id(p): i for i, p in enumerate(optimizer.params)}
        if any(id(p) not in index for p in self.params):
            raise RuntimeError("the DP optimizer does not hold the canary tensors; the audit cannot observe them")
        k = len(self.params)
        norms = getattr(optimizer, "max_grad_norms", None)
        if norms is not None:  # per-layer clipping: each tensor's own threshold (a canary's 2 C exceeds it)
            kept = [norms[index[id(p)]] for p in self.params]
        else:  # flat: the canary row's norm is norm * sqrt(k), clipped to C as a whole
            kept = [optimizer.max_grad_norm / math.sqrt(k)] * k
        self.kept = sum(kept)
        self.divisor = float(optimizer.expected_batch_size)
        self.built = {
            "divisor": self.divisor,
            "sample_rate": _sampler_rate(loader),
            "steps": int(steps),
            "noise_std": float(optimizer.noise_multiplier * optimizer.max_grad_norm),
            # noise std in canary units = noise multiplier x geometry (1 for flat clipping)
            "geometry": float(optimizer.max_grad_norm * math.sqrt(k) / self.kept),
            "canary_tensors": k,
            "clipped_canary_norm": float(math.sqrt(sum(c * c for c in kept))),
        }
        previous = optimizer.step_hook

        def observe(opt) -> None:
            if previous is not None:
                previous(opt)  # the accountant
            with torch.no_grad():
                block = torch.stack([_grad(p).reshape(-1).float() for p in self.params]).sum(0)
            self.rows.append((block * (self.divisor / self.kept)).cpu().numpy().astype(np.float64))
            if self.on_step is not None:
                self.on_step()
            if self.stop_after is not None and len(self.rows) >= self.stop_after:
                raise StopTraining

        optimizer.attach_step_hook(observe)

    @property
    def observations(self) -> np.ndarray:
        return np.stack(self.rows) if self.rows else np.zeros((0, self.params[0].numel()))


class MechanismProbe:
    """The instrument of a structural probe: what the built parts say, then :class:`Probed`."""

    def __init__(self) -> None:
        self.facts: dict = {}

    def __call__(self, model, optimizer, loader, *, steps: int, rows: int) -> None:
        norms = getattr(optimizer, "max_grad_norms", None)
        self.facts = {
            "rows": int(rows),
            "sample_rate": _sampler_rate(loader),
            "divisor": float(optimizer.expected_batch_size),
            "steps": int(steps),
            "noise_multiplier": float(optimizer.noise_multiplier),
            "max_grad_norm": float(optimizer.max_grad_norm),
            "per_tensor_norms": None if norms is None else [float(n) for n in norms],
            "optimizer": type(optimizer).__name__,
            "loss_reduction": optimizer.loss_reduction,
        }
        raise Probed
