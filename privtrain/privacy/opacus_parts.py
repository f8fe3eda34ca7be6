"""DP-SGD's moving parts, built from the plan's public values: never from the rows' count.

Opacus' ``PrivacyEngine.make_private`` derives the sampling rate from ``len(data_loader)`` and the
divisor of every noisy sum from ``len(dataset) * sample_rate``: both functions of the private row
count, so two neighbouring datasets would run different mechanisms. privtrain assembles the same
Opacus parts itself instead, each given the plan's public value:

- the per-sample-gradient module (:func:`opacus.grad_sample.utils.prepare_module`);
- the DP optimizer (:func:`opacus.optimizers.get_optimizer_class`), whose divisor
  (``expected_batch_size``) is the configured batch size: the logical batch, split evenly over the
  ranks of a torchrun job;
- the accountant's step hook at the plan's sampling rate;
- :class:`PoissonBatches`, which draws every step's batch at that rate for exactly the plan's number
  of steps, an empty batch included. Every rank of a torchrun job therefore takes every step (an
  empty share adds zero to the sum but still joins the all-reduce), where Opacus' distributed
  sampler skips empty batches and lets the ranks drift apart.

Under mixed precision (``recipe.amp=true``) the hooks compute per-sample gradients in bfloat16;
Opacus would take their norms in bfloat16 and clip to up to 1.008 C. :func:`float32_grad_samples`
upcasts them before the optimizer clips, so the clipped norm is C up to float32 rounding.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

if TYPE_CHECKING:
    from opacus.accountants import IAccountant
    from opacus.optimizers import DPOptimizer
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping


class PoissonBatches(UniformWithReplacementSampler):
    """Opacus' Poisson sampler over ``rows`` (this rank's share of the training rows), for exactly
    ``steps`` batches; empty batches are yielded, never skipped."""

    def __init__(self, rows: torch.Tensor, *, sample_rate: float, steps: int, generator) -> None:
        self.rows = rows
        if len(rows):
            super().__init__(num_samples=len(rows), sample_rate=sample_rate, generator=generator, steps=steps)
        else:  # a rank or client without rows still takes every step (Opacus refuses num_samples=0)
            self.num_samples, self.sample_rate, self.generator, self.steps = 0, sample_rate, generator, steps

    def __iter__(self):
        if not len(self.rows):
            for _ in range(self.steps):
                yield []
            return
        for chosen in super().__iter__():
            yield self.rows[chosen].tolist()


class _Collate:
    """Stack a batch of (x, y) rows; an empty batch gives empty tensors of the right shape. (Opacus' own
    wrapper logs a warning when the first batch is empty: a fact about the secret sampling.)"""

    def __init__(self, empty_x: torch.Tensor, empty_y: torch.Tensor) -> None:
        self.empty = (empty_x, empty_y)

    def __call__(self, batch: list):
        from torch.utils.data import default_collate

        return default_collate(batch) if batch else self.empty


@dataclass
class Private:
    """What the training loop uses under DP: each part carries the plan's public values."""

    model: nn.Module
    optimizer: DPOptimizer  # or a subclass
    criterion: nn.CrossEntropyLoss | DPLossFastGradientClipping  # the latter under ghost clipping
    loader: DataLoader
    accountant: IAccountant  # hooked to every optimizer step at the plan's rate


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x,
    y,
    dp,
    settings,
    *,
    resume: dict | None,
    reproducible_noise_from: int | None,
    device,
    world,
) -> Private:
    """Wrap ``model`` and ``optimizer`` for DP-SGD as planned by ``dp`` (a ``DpSgdPlan``).

    Args:
        x, y: the training arrays (this process trains ``world``'s share of them).
        dp: the plan: noise multiplier, clipping norm, sampling rate, steps, accountant.
        settings: the training settings: ``batch_size`` is the divisor; clipping and per-sample-gradient mode.
        resume: a checkpoint whose accountant state continues.
        reproducible_noise_from: debugging only: noise and sampling from this seed (guarantee void).
        world: :func:`privtrain.distributed.world`, or None for one process.

    ``settings.grad_sample_mode=auto`` is resolved here by :func:`privtrain.privacy.clipping_mode.choose`
    (recipes resolve it at plan time, to record why).

    Raises:
        UserError: mixed precision with ghost clipping (its norms would be bfloat16).
    """
    from dataclasses import replace

    from opacus.accountants import create_accountant
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
    from opacus.grad_sample.utils import prepare_module
    from opacus.optimizers import get_optimizer_class
    from opacus.validators import ModuleValidator

    from privtrain.errors import UserError
    from privtrain.privacy.clipping_mode import AUTO, choose
    from privtrain.privacy.dp_sgd import AMP_GHOST
    from privtrain.privacy.randomness import torch_generator

    if (
        settings.grad_sample_mode == AUTO
    ):  # callers that did not resolve it at plan time (e.g. fl.grad_sample_mode=auto)
        settings = replace(
            settings, grad_sample_mode=choose(AUTO, model, clipping=settings.clipping, amp=settings.amp).mode
        )
    if settings.amp and settings.grad_sample_mode == "ghost":
        raise UserError(AMP_GHOST)
    accountant = create_accountant(mechanism=dp.accountant)
    if resume is not None and resume.get("accountant") is not None:
        accountant.load_state_dict(resume["accountant"])
    ModuleValidator.validate(model, strict=True)
    if world is not None:  # broadcasts rank 0's initial weights; each rank then clips its own share
        model = DPDDP(model)
    n_params = len([p for p in model.parameters() if p.requires_grad])
    max_grad_norm = (
        dp.max_grad_norm if settings.clipping == "flat" else [dp.max_grad_norm / math.sqrt(n_params)] * n_params
    )
    extra = {"max_grad_norm": max_grad_norm} if settings.grad_sample_mode == "ghost" else {}
    module = prepare_module(
        model, grad_sample_mode=settings.grad_sample_mode, batch_first=True, loss_reduction="mean", **extra
    )
    module.forbid_grad_accumulation()  # Poisson batches: one backward per (physical) batch
    ranks = 1 if world is None else world.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' note on secure RNG: stated in the model card instead
        dp_optimizer = get_optimizer_class(settings.clipping, world is not None, settings.grad_sample_mode)(
            optimizer,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=settings.batch_size / ranks,  # per rank: the ranks' sums are averaged
            loss_reduction="mean",
            generator=torch_generator(reproducible_noise_from, "dp-sgd-noise", device=device),
        )
    dp_optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=dp.sample_rate))
    criterion = nn.CrossEntropyLoss()
    if settings.grad_sample_mode == "ghost":
        from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

        criterion = DPLossFastGradientClipping(module, dp_optimizer, criterion, "mean")
    rank = "" if world is None else f"-rank{world.rank}"  # each rank samples its own share, independently
    share = torch.arange(len(y)) if world is None else torch.arange(world.rank, len(y), world.size)
    batches = PoissonBatches(
        share,
        sample_rate=dp.sample_rate,
        steps=dp.steps,
        generator=torch_generator(reproducible_noise_from, f"poisson{rank}"),
    )
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    loader = DataLoader(TensorDataset(x_t, y_t), batch_sampler=batches, collate_fn=_Collate(x_t[:0], y_t[:0]))
    return Private(module, dp_optimizer, criterion, loader, accountant)


def float32_grad_samples(optimizer) -> None:
    """Upcast the per-sample gradients (bfloat16 under autocast) so that Opacus takes their norms and
    clips them in float32: clipping bfloat16 norms let clipped gradients reach 1.008 C."""
    for p in optimizer.params:
        g = getattr(p, "grad_sample", None)
        if isinstance(g, torch.Tensor) and g.dtype != torch.float32:
            p.grad_sample = g.float()
        elif isinstance(g, list):
            p.grad_sample = [t.float() for t in g]


def physical_batches(private: Private, settings):
    """Yield (x, y, is_step) where is_step() tells whether the optimizer really stepped.

    With Opacus' BatchMemoryManager a logical batch is split into physical ones and the DP
    optimizer skips the step for all but the last; an empty logical batch is one (empty) step.
    """
    if settings.max_physical_batch_size < settings.batch_size:
        from opacus.utils.batch_memory_manager import BatchMemoryManager

        optimizer = private.optimizer
        with BatchMemoryManager(
            data_loader=private.loader, max_physical_batch_size=settings.max_physical_batch_size, optimizer=optimizer
        ) as memory_safe:
            for xb, yb in memory_safe:
                yield xb, yb, lambda: not optimizer._is_last_step_skipped
        return
    for xb, yb in private.loader:
        yield xb, yb, lambda: True
