"""Plain PyTorch training and evaluation, private (Opacus) or not.

Recipes call :func:`train` with arrays and plain settings. Under DP it assembles
Opacus' parts from the plan's public values (:mod:`privtrain.privacy.opacus_parts`):
Poisson sampling at the planned rate for exactly the planned steps (empty batches
included), per-sample clipping in float32, Gaussian noise, a divisor that is the
configured batch size, and BatchMemoryManager for logical batches larger than the
physical one. The weights' exponential moving average (post-processing of the DP
iterates, so free) is what the run returns. The progress bar shows steps and ε,
never the training-batch loss (a non-DP statistic of the training rows).
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

    ``epochs=None`` (dp_sgd's default) trains ``steps`` optimizer steps, rounded up to whole epochs of
    the training rows (public under DP, :meth:`for_rows`): a fixed number of epochs would give a
    455-row table a quarter of the steps of a 1,437-row one at the same batch size. An explicit
    ``epochs`` wins. Under DP the plan's steps (``DpSgdPlan.steps``) are what :func:`train` runs.
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

    def for_rows(self, n_train: int) -> TrainSettings:
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
        dp: a :class:`privtrain.privacy.dp_sgd.DpSgdPlan`, or None for non-private training. Under DP
            exactly ``dp.steps`` steps are taken at sampling rate ``dp.sample_rate``, each noisy sum
            divided by ``settings.batch_size`` (``settings.epochs`` applies to non-private training).
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
        return _train(
            model,
            x,
            y,
            settings,
            dp=dp,
            seed=seed,
            resume=resume,
            desc=desc,
            report_epsilon=report_epsilon,
            reproducible_noise_from=reproducible_noise_from,
            device=devices.resolve(device),
            instrument=instrument,
        )
    finally:
        torch.set_num_threads(threads_before)


def _train(
    model,
    x,
    y,
    settings: TrainSettings,
    *,
    dp,
    seed: int,
    resume: dict | None,
    desc: str,
    report_epsilon: bool,
    reproducible_noise_from: int | None,
    device,
    instrument=None,
) -> TrainOutcome:
    from tqdm.auto import tqdm

    world = distributed.world()
    if world is not None and dp is None:
        raise UserError(
            "privacy=none under torchrun: the non-private baseline runs as one process "
            "(privtrain run dp_sgd privacy=none ...)."
        )
    if settings.amp:
        devices.check_amp(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model.to(device)
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.momentum)
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
    private = None
    if dp is not None:  # the sampling rate, steps and divisor are the plan's public values (privacy.opacus_parts)
        from privtrain.privacy.opacus_parts import float32_grad_samples, make_private, physical_batches

        private = make_private(
            model,
            optimizer,
            x,
            y,
            dp,
            settings,
            resume=resume,
            reproducible_noise_from=reproducible_noise_from,
            device=device,
            world=world,
        )
        model, optimizer, criterion, total = private.model, private.optimizer, private.criterion, dp.steps
        # --- one-run audit hooks: the mechanism as built, before the first step (privtrain/audit/canaries.py) ---
        from privtrain.privacy import mutants

        mutants.apply(model, optimizer, private.loader, rows=len(y), seed=seed)  # tests only: PRIVTRAIN_MUTANT
        if instrument is not None:
            instrument(model, optimizer, private.loader, steps=dp.steps, rows=len(y))
        # --- end of the one-run audit hooks ---
        batches = physical_batches(private, settings)
    else:
        if settings.epochs is None:  # recipes resolve it from the training rows first
            raise ValueError("non-private training needs settings.epochs: call TrainSettings.for_rows(n_train) first")
        criterion = nn.CrossEntropyLoss()
        loader = DataLoader(
            TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
            batch_size=settings.batch_size,
            shuffle=True,
            generator=generator,
        )
        total, batches = len(loader) * settings.epochs, _epochs(loader, settings.epochs)
    averaged = [p.detach().clone() for p in model.parameters()]
    losses: list[float] = []
    steps = 0
    # The bar shows steps and epsilon only: the training-batch loss is a non-DP statistic of the training rows.
    bar = tqdm(
        total=total, desc=desc, unit="step", disable=not settings.progress or not distributed.is_main(), leave=False
    )
    model.train()
    for xb, yb, is_step in batches:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with devices.autocast(device, settings.amp):
            logits = model(xb)
        loss = criterion(logits.float(), yb)  # the loss (and Opacus' ghost criterion) in float32
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on full backward hooks with no input grads
            loss.backward()
        if private is not None:
            float32_grad_samples(optimizer)  # Opacus clips what it finds: float32 norms keep it within C
        optimizer.step()  # under DP also for an empty batch: zero gradient, full noise, a step like any other
        optimizer.zero_grad(set_to_none=True)
        if not is_step():
            continue
        steps += 1
        if settings.ema:
            with torch.no_grad():
                for avg, p in zip(averaged, model.parameters()):
                    if p.requires_grad:  # a frozen (pretrained) weight stays bit-identical: x*a + x*(1-a) may not
                        avg.mul_(settings.ema).add_(p.detach(), alpha=1 - settings.ema)
        if len(yb):
            losses.append(float(loss.detach()))
            tracking.report_train_loss(steps, losses[-1])  # only where tracking.log_train_loss=true declares it
        bar.update(1)
        postfix = _eps_postfix(private, dp, bar, steps)
        if postfix:
            bar.set_postfix(**postfix)
    bar.close()
    if world is not None:
        distributed.check_in_step(steps, device)  # every rank took every step, or the job fails (charged as reserved)
    plain = model._module if hasattr(model, "_module") else model
    plain = plain.module if isinstance(plain, _DPDDP()) else plain
    if settings.ema and steps:
        with torch.no_grad():
            for avg, p in zip(averaged, model.parameters()):
                p.copy_(avg)
    accountant = private.accountant if private is not None else None
    accountant_state = accountant.state_dict() if accountant is not None else None
    epsilon = _epsilon(accountant, dp.delta) if accountant is not None and report_epsilon else None
    return TrainOutcome(plain.cpu(), optimizer.state_dict(), accountant_state, epsilon, steps, losses)


def _DPDDP():
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel

    return DifferentiallyPrivateDistributedDataParallel


_EPS_EVERY = 25  # steps between epsilon refreshes on the bar (the PRV accountant takes ~0.1 s)


def _epsilon(accountant, delta: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' notes on alpha ranges
        return float(accountant.get_epsilon(delta=delta))


def _eps_postfix(private, dp, bar, steps: int) -> dict:
    """ε so far, every _EPS_EVERY steps, for the progress bar and the experiment tracker."""
    if private is None or (bar.disable and not tracking.listening()):
        return {}
    if steps % _EPS_EVERY == 1 or steps == bar.total:
        epsilon = _epsilon(private.accountant, dp.delta)
        bar._privtrain_eps = f"{epsilon:.2f}"
        tracking.report(steps, epsilon=epsilon)
    return {"eps": getattr(bar, "_privtrain_eps", "0.00")}


def _epochs(loader, epochs: int):
    """Non-private training: shuffled batches, every batch a step."""
    for _ in range(epochs):
        for xb, yb in loader:
            yield xb, yb, lambda: True


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    """Held-out scores (:func:`privtrain.scores.classification`: accuracy, balanced accuracy, macro-F1, AUC,
    the majority baseline, per-class recall) and mean cross-entropy."""
    from privtrain import scores

    model.eval()
    logits = model(torch.from_numpy(x))
    target = torch.from_numpy(y)
    out = scores.classification(y, torch.softmax(logits.float(), 1).numpy(), n_classes)
    out["loss"] = float(nn.functional.cross_entropy(logits, target))
    out["n_test"] = int(len(y))
    return out
