"""Plain PyTorch training and evaluation, private (Opacus) or not.

Recipes call :func:`train` with arrays and plain settings. Under DP it wraps
the model with Opacus' PrivacyEngine: Poisson sampling, per-sample clipping,
Gaussian noise, and BatchMemoryManager for logical batches larger than the
physical one. The weights' exponential moving average (post-processing of the
DP iterates, so free) is what the run returns.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privtrain import devices, distributed, tracking
from privtrain.errors import UserError


@dataclass(frozen=True)
class TrainSettings:
    """Training settings (``recipe.*`` of dp_sgd; the federated clients build their own).

    ``epochs=None`` (dp_sgd's default) trains ``steps`` optimizer steps, rounded up to whole epochs once
    the number of training rows is known (:meth:`for_rows`): a fixed number of epochs would give a
    455-row table a quarter of the steps of a 1,437-row one at the same batch size. An explicit
    ``epochs`` wins.
    """

    epochs: int | None
    batch_size: int
    max_physical_batch_size: int
    optimizer: str
    lr: float
    momentum: float = 0.0
    ema: float = 0.0
    grad_sample_mode: str = "hooks"
    clipping: str = "flat"
    progress: bool = True
    threads: int = 1
    steps: int | None = None
    amp: bool = False  # bfloat16 autocast of the forward pass (privtrain.devices)

    def for_rows(self, n_train: int) -> "TrainSettings":
        """These settings with ``epochs`` resolved for ``n_train`` training rows.

        Raises:
            UserError: neither a positive ``steps`` nor ``epochs``.
        """
        from dataclasses import replace

        if self.epochs is not None:
            return self
        if self.steps is None or self.steps < 1:
            raise UserError(f"recipe.steps={self.steps} must be at least 1 (or set recipe.epochs).")
        per_epoch = max(1, math.ceil(n_train / max(1, self.batch_size)))
        return replace(self, epochs=math.ceil(self.steps / per_epoch))


@dataclass
class TrainOutcome:
    model: nn.Module  # unwrapped, holding the EMA weights when ema > 0
    optimizer_state: dict
    accountant_state: dict | None
    epsilon: float | None  # by the run's accountant, over all steps (resumed ones included); None if not asked
    steps: int  # optimizer steps taken in this call
    losses: list[float] = field(default_factory=list)


def make_optimizer(name: str, params, lr: float, momentum: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    raise UserError(f"recipe.optimizer={name!r} is unknown; choose adam or sgd.")


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: TrainSettings,
    *,
    dp=None,
    seed: int = 0,
    resume: dict | None = None,
    desc: str = "train",
    report_epsilon: bool = True,
    reproducible_noise_from: int | None = None,
    device: str = "cpu",
    instrument=None,
) -> TrainOutcome:
    """Train ``model`` on ``(x, y)``.

    ``seed`` sets the public randomness (initialisation, and the shuffling of non-private training).
    Under DP the noise and the Poisson sampling draw from generators seeded from the OS's entropy
    (:mod:`privtrain.privacy.randomness`), never from ``seed``.

    Args:
        dp: a :class:`privtrain.privacy.dp_sgd.DpSgdPlan`, or None for non-private training.
        reproducible_noise_from: debugging only: derive the noise and sampling from this seed. The
            run's guarantee is then void (the caller reports ε = ∞).
        resume: a checkpoint dict from :func:`checkpoint`: optimizer and accountant state.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:mod:`privtrain.devices`). Under torchrun
            (:mod:`privtrain.distributed`) each rank trains its share of every batch; only rank 0 adds noise.
        report_epsilon: compute the outcome's epsilon (one accountant call, up to ~1 s for PRV at a
            high sampling rate). Federated clients skip it: the server accounts from their step counts.
        instrument: the one-run audit's probe (:mod:`privtrain.audit.canaries`): called under DP with
            ``(model, optimizer, loader, steps=..., rows=...)`` once the Opacus parts are built, before the
            first step. It may observe every noisy update or stop the training by raising.
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.threads))
    try:
        return _train(model, x, y, settings, dp=dp, seed=seed, resume=resume, desc=desc,
                      report_epsilon=report_epsilon, reproducible_noise_from=reproducible_noise_from,
                      device=devices.resolve(device), instrument=instrument)
    finally:
        torch.set_num_threads(threads_before)


def _train(model, x, y, settings: TrainSettings, *, dp, seed: int, resume: dict | None, desc: str,
           report_epsilon: bool, reproducible_noise_from: int | None, device, instrument=None) -> TrainOutcome:
    from tqdm.auto import tqdm

    world = distributed.world()
    if world is not None and dp is None:
        raise UserError("privacy=none under torchrun: the non-private baseline runs as one process "
                        "(privtrain run dp_sgd privacy=none ...).")
    if settings.amp:
        devices.check_amp(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model.to(device)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=dp is None, generator=generator)
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.momentum)
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
    criterion: nn.Module = nn.CrossEntropyLoss()
    engine = None
    if dp is not None:
        model, optimizer, criterion, loader, engine = _make_private(model, optimizer, criterion, loader, dp, settings,
                                                                    resume, reproducible_noise_from, device, world)
        # --- one-run audit hooks: the mechanism as built, before the first step (privtrain/audit/canaries.py) ---
        from privtrain.privacy import mutants

        mutants.apply(model, optimizer, loader, rows=len(dataset), seed=seed)  # tests only: PRIVTRAIN_MUTANT
        if instrument is not None:
            instrument(model, optimizer, loader, steps=len(loader) * settings.epochs, rows=len(dataset))
        # --- end of the one-run audit hooks ---
    averaged = [p.detach().clone() for p in model.parameters()]
    losses: list[float] = []
    steps = 0
    expected = math.ceil(len(dataset) / settings.batch_size) * settings.epochs
    bar = tqdm(total=expected, desc=desc, unit="step", disable=not settings.progress or not distributed.is_main(),
               leave=False)
    model.train()
    for _ in range(settings.epochs):
        for xb, yb, is_step in _batches(loader, optimizer, engine, settings):
            if len(xb) == 0 and world is None:
                continue  # (under torchrun every rank steps together, an empty share included)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with devices.autocast(device, settings.amp):
                logits = model(xb)
            loss = criterion(logits.float(), yb)  # the loss (and Opacus' ghost criterion) in float32
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's note on full backward hooks with no input grads
                loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if not is_step():
                continue
            steps += 1
            if settings.ema:
                with torch.no_grad():
                    for avg, p in zip(averaged, model.parameters()):
                        avg.mul_(settings.ema).add_(p.detach(), alpha=1 - settings.ema)
            losses.append(float(loss.detach()))
            tracking.report_train_loss(steps, losses[-1])
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", **_eps_postfix(engine, dp, bar, steps))
    bar.close()
    plain = model._module if hasattr(model, "_module") else model
    plain = plain.module if isinstance(plain, _DPDDP()) else plain
    if settings.ema and steps:
        with torch.no_grad():
            for avg, p in zip(averaged, model.parameters()):
                p.copy_(avg)
    accountant_state = engine.accountant.state_dict() if engine else None
    epsilon = _epsilon(engine, dp.delta) if engine and report_epsilon else None
    return TrainOutcome(plain.cpu(), optimizer.state_dict(), accountant_state, epsilon, steps, losses)


def _DPDDP():
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel

    return DifferentiallyPrivateDistributedDataParallel


_EPS_EVERY = 25  # steps between epsilon refreshes on the bar (the PRV accountant takes ~0.1 s)


def _epsilon(engine, delta: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' notes on alpha ranges
        return float(engine.accountant.get_epsilon(delta=delta))


def _eps_postfix(engine, dp, bar, steps: int) -> dict:
    """ε so far, every _EPS_EVERY steps, for the progress bar and the experiment tracker."""
    if engine is None or (bar.disable and not tracking.listening()):
        return {}
    if steps % _EPS_EVERY == 1 or steps == bar.total:
        epsilon = _epsilon(engine, dp.delta)
        bar._privtrain_eps = f"{epsilon:.2f}"
        tracking.report(steps, epsilon=epsilon)
    return {"eps": getattr(bar, "_privtrain_eps", "0.00")}


def _make_private(model, optimizer, criterion, loader, dp, settings, resume, reproducible_noise_from, device, world):
    from opacus import PrivacyEngine
    from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler, UniformWithReplacementSampler

    from privtrain.privacy.randomness import torch_generator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Secure RNG turned off": stated in the model card instead
        engine = PrivacyEngine(accountant=dp.accountant)
    if resume is not None and resume.get("accountant") is not None:
        engine.accountant.load_state_dict(resume["accountant"])
    if world is not None:  # Opacus sees DPDDP and builds the distributed sampler and optimizer
        model = _DPDDP()(model)
    n_params = len([p for p in model.parameters() if p.requires_grad])
    max_grad_norm = dp.max_grad_norm if settings.clipping == "flat" else [dp.max_grad_norm / math.sqrt(n_params)] * n_params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure RNG; see the model card
        wrapped = engine.make_private(
            module=model, optimizer=optimizer, criterion=criterion, data_loader=loader,
            noise_multiplier=dp.noise_multiplier, max_grad_norm=max_grad_norm,
            poisson_sampling=True, clipping=settings.clipping, grad_sample_mode=settings.grad_sample_mode,
            noise_generator=torch_generator(reproducible_noise_from, "dp-sgd-noise", device=device),
        )
    if settings.grad_sample_mode == "ghost":
        model, optimizer, criterion, loader = wrapped
    else:
        model, optimizer, loader = wrapped
    # Opacus' Poisson sampler draws from the global RNG, which `seed` sets: give it a secret one.
    if not isinstance(loader.batch_sampler, (UniformWithReplacementSampler, DistributedUniformWithReplacementSampler)):
        raise RuntimeError("Opacus did not build a Poisson sampler; refusing to train with a public sampling RNG")
    rank = "" if world is None else f"-rank{world.rank}"  # each rank samples its own share, independently
    loader.batch_sampler.generator = torch_generator(reproducible_noise_from, f"poisson{rank}")
    return model, optimizer, criterion, loader, engine


def _batches(loader, optimizer, engine, settings):
    """Yield (x, y, is_step) where is_step() tells whether the optimizer really stepped.

    With BatchMemoryManager a logical batch is split into physical ones and the
    DP optimizer skips the step for all but the last.
    """
    if engine is None:
        for xb, yb in loader:
            yield xb, yb, lambda: True
        return
    if settings.max_physical_batch_size < settings.batch_size:
        from opacus.utils.batch_memory_manager import BatchMemoryManager

        with BatchMemoryManager(
            data_loader=loader, max_physical_batch_size=settings.max_physical_batch_size, optimizer=optimizer
        ) as memory_safe:
            for xb, yb in memory_safe:
                yield xb, yb, lambda: not optimizer._is_last_step_skipped
        return
    for xb, yb in loader:
        yield xb, yb, lambda: True


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    """Accuracy, mean cross-entropy and per-class accuracy."""
    model.eval()
    logits = model(torch.from_numpy(x))
    target = torch.from_numpy(y)
    pred = logits.argmax(1)
    per_class = {}
    for c in range(n_classes):
        mask = target == c
        per_class[str(c)] = float((pred[mask] == c).float().mean()) if mask.any() else None
    return {
        "accuracy": float((pred == target).float().mean()),
        "loss": float(nn.functional.cross_entropy(logits, target)),
        "per_class_accuracy": per_class,
        "n_test": int(len(y)),
    }
