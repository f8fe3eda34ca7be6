"""Injected DP-SGD bugs for the one-run audit's mutation tests. Never set outside tests.

``PRIVTRAIN_MUTANT=<name>`` (read here, in one place, by :func:`apply`, which the training calls once its
Opacus parts are built) makes the training deviate from the mechanism it accounts for, the way
published DP code has:

- ``half_noise``: the noise added is half what the accountant assumes (σ/2);
- ``unclipped_linear``: per-sample gradients of ``nn.Linear`` layers are summed without clipping (under ghost
  clipping, where no per-layer sum exists, every example's clipping factor is 1);
- ``double_rate``: the loader Poisson-samples at 2q while the accountant charges q;
- ``rows_divisor``: the noisy sum is divided by (rows read) × q, a function of the private row count;
- ``seeded_noise``: the noise generator is seeded from the public ``seed``.

The accountant, the plan and everything the run reports stay as for correct code, so only an audit of
the mechanism itself can tell (:mod:`privtrain.audit.one_run`; ``tests/test_one_run_mutants.py``).
"""

from __future__ import annotations

import os

ENV = "PRIVTRAIN_MUTANT"
MUTANTS = ("half_noise", "unclipped_linear", "double_rate", "rows_divisor", "seeded_noise")


def active() -> str | None:
    """The mutant named by ``PRIVTRAIN_MUTANT``, or None.

    Raises:
        ValueError: an unknown name (a typo must not silently test the correct code).
    """
    name = os.environ.get(ENV) or None
    if name is not None and name not in MUTANTS:
        raise ValueError(f"Expected {ENV} in {MUTANTS}, got {name!r}.")
    return name


def apply(model, optimizer, loader, *, rows: int, seed: int) -> str | None:
    """Break the built DP-SGD parts as :func:`active` says (nothing when it says nothing); return its name."""
    name = active()
    if name == "half_noise":
        _half_noise(optimizer)
    elif name == "unclipped_linear":
        _unclipped_linear(model, optimizer)
    elif name == "double_rate":
        loader.batch_sampler.sample_rate = min(1.0, 2 * loader.batch_sampler.sample_rate)
    elif name == "rows_divisor":
        optimizer.expected_batch_size = rows * loader.batch_sampler.sample_rate  # Opacus < 1.0's len(data) * q
    elif name == "seeded_noise":
        import torch

        optimizer.generator = torch.Generator(device=optimizer.params[0].device).manual_seed(seed)
    return name


def _half_noise(optimizer) -> None:
    add_noise = optimizer.add_noise

    def halved() -> None:
        sigma = optimizer.noise_multiplier
        optimizer.noise_multiplier = sigma / 2  # restored before the accountant's step hook reads it
        try:
            add_noise()
        finally:
            optimizer.noise_multiplier = sigma

    optimizer.add_noise = halved


def _unclipped_linear(model, optimizer) -> None:
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from torch import nn

    if isinstance(model, GradSampleModuleFastGradientClipping):  # ghost clipping (auto's usual pick)
        _unclipped_ghost(model)
        return
    linear = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    targets = [p for p in optimizer.params if id(p) in linear]
    clip_and_accumulate = optimizer.clip_and_accumulate

    def skip_linear() -> None:
        before = {id(p): None if p.summed_grad is None else p.summed_grad.clone() for p in targets}  # += is in place
        raw = {id(p): optimizer._get_flat_grad_sample(p) for p in targets}
        clip_and_accumulate()
        for p in targets:
            if raw[id(p)] is None:  # no per-sample gradient kept for it: nothing to skip
                continue
            unclipped = raw[id(p)].to(p.dtype).sum(0)
            p.summed_grad = unclipped if before[id(p)] is None else before[id(p)] + unclipped

    optimizer.clip_and_accumulate = skip_linear


def _unclipped_ghost(model) -> None:
    """Ghost clipping has no per-layer sums to skip: every example's clipping factor becomes 1 (the norms are
    still taken), so the second backward pass sums the gradients unclipped."""
    import torch

    coefficients = model.get_clipping_coef

    def ones() -> torch.Tensor:
        return torch.ones_like(coefficients())

    model.get_clipping_coef = ones
