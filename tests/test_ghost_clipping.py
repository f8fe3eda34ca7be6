"""recipe.grad_sample_mode=auto, and ghost clipping's guarantee checked against hooks on the same model and batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY
from torch import nn

import privtrain
from privtrain import models, training
from privtrain.privacy.clipping_mode import choose
from privtrain.privacy.dp_sgd import DpSgdPlan
from privtrain.privacy.opacus_parts import make_private

MLP = models.ModelSpec("mlp", hidden=(32, 16))
CNN = models.ModelSpec("cnn", channels=(4, 8), groups=2)


def _model(spec: models.ModelSpec, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.build(spec, n_inputs=64, n_classes=10, image_shape=(1, 8, 8))


def _settings(mode: str, *, batch: int = 32, physical: int | None = None) -> training.TrainSettings:
    return training.TrainSettings(
        epochs=1,
        batch_size=batch,
        max_physical_batch_size=physical or batch,
        optimizer="sgd",
        lr=1.0,
        grad_sample_mode=mode,
        progress=False,
    )


def _plan(clip: float, steps: int = 1, rate: float = 0.5) -> DpSgdPlan:
    # noise 0: the update is the clipped sum itself, so two modes can be compared value by value
    return DpSgdPlan(
        noise_multiplier=0.0,
        sample_rate=rate,
        steps=steps,
        delta=1e-5,
        max_grad_norm=clip,
        accountant="rdp",
        epsilon=float("inf"),
    )


def _data(n: int = 32, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 64)).astype(np.float32) * 3, rng.integers(0, 10, n).astype(np.int64)


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
def test_auto_picks_ghost_when_every_layer_supports_it(spec):
    chosen = choose("auto", _model(spec), clipping="flat", amp=False)
    assert chosen.mode == "ghost" and "every trainable layer supports it" in chosen.reason
    assert ("per-sample-gradient norm" in chosen.reason) == (spec is CNN)  # Conv2d/GroupNorm: no ghost norm in Opacus


def test_auto_falls_back_to_hooks_and_says_why():
    model = _model(MLP)
    assert choose("auto", model, clipping="per_layer", amp=False).mode == "hooks"
    amp = choose("auto", model, clipping="flat", amp=True)
    assert amp.mode == "hooks" and "bfloat16" in amp.reason

    class Scale(nn.Module):  # a layer with no Opacus sampler: ghost mode would need functorch
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(10))

        def forward(self, x):
            return x * self.w

    odd = choose("auto", nn.Sequential(nn.Linear(64, 10), Scale()), clipping="flat", amp=False)
    assert odd.mode == "hooks" and "1 (Scale)" in odd.reason
    tied = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))
    tied[1].weight = tied[0].weight
    assert "shares parameters" in choose("auto", tied, clipping="flat", amp=False).reason
    frozen = nn.Sequential(nn.Linear(64, 10), Scale())
    frozen[1].w.requires_grad_(False)  # a frozen layer is not clipped, so it does not stop ghost clipping
    assert choose("auto", frozen, clipping="flat", amp=False).mode == "ghost"
    assert choose("functorch", model, clipping="flat", amp=False).mode == "functorch"  # explicit: kept


def _norms_and_update(spec, mode: str, clip: float):
    """Per-example gradient norms and the weights after one noiseless step, through privtrain's Opacus parts."""
    x, y = _data()
    model = _model(spec)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    private = make_private(
        model, opt, x, y, _plan(clip), _settings(mode), resume=None, reproducible_noise_from=0, device="cpu", world=None
    )
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)  # the whole batch: compare on the same examples
    loss = private.criterion(private.model(xb), yb)
    loss.backward()
    if mode == "ghost":
        norms = private.model.per_sample_gradient_norms
    else:
        per_param = [p.grad_sample.reshape(len(y), -1).norm(dim=1) for p in private.optimizer.params]
        norms = torch.stack(per_param).norm(dim=0)
    private.optimizer.step()
    return norms.detach().clone(), [p.detach().clone() for p in private.model.parameters()]


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
def test_ghost_clips_each_example_as_hooks_do(spec):
    """The guarantee rests on each example's contribution being clipped to C: ghost clipping's norms, clipping
    factors and clipped sum (noise 0) must be hooks' on the same model, seed and batch."""
    hooks_norms, _ = _norms_and_update(spec, "hooks", clip=1.0)
    clip = float(hooks_norms.median())  # about half the examples are clipped, half are not
    hooks_norms, hooks_after = _norms_and_update(spec, "hooks", clip=clip)
    ghost_norms, ghost_after = _norms_and_update(spec, "ghost", clip=clip)
    assert len(ghost_norms) == 32
    torch.testing.assert_close(ghost_norms, hooks_norms, rtol=1e-4, atol=1e-6)
    factors = [(clip / (n + 1e-6)).clamp(max=1.0) for n in (hooks_norms, ghost_norms)]
    torch.testing.assert_close(factors[0], factors[1], rtol=1e-4, atol=1e-6)
    assert 0 < int((factors[0] < 1).sum()) < 32
    before = [p.detach() for p in _model(spec).parameters()]
    moved = sum(float((a - b).abs().sum()) for a, b in zip(hooks_after, before))
    assert moved > 1e-3  # the step did something, so agreeing below is not vacuous
    for h, g in zip(hooks_after, ghost_after):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)


def test_ghost_clipped_sum_never_exceeds_the_clip_norm():
    """The attacker's view: one example with a huge gradient moves the weights by at most lr * C / batch."""
    x, y = _data()
    x[0] *= 1e4
    model = _model(MLP)
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    private = make_private(
        model,
        opt,
        x[:1],
        y[:1],
        _plan(0.5),
        _settings("ghost"),
        resume=None,
        reproducible_noise_from=0,
        device="cpu",
        world=None,
    )
    private.criterion(private.model(torch.from_numpy(x[:1])), torch.from_numpy(y[:1])).backward()
    private.optimizer.step()
    step = torch.cat([(p.detach() - s).flatten() for p, s in zip(private.model.parameters(), start)])
    assert float(step.norm()) <= 0.5 / 32 * (1 + 1e-5)
    assert float(step.norm()) >= 0.5 / 32 * 0.99  # and it was clipped, not dropped


def test_physical_batches_with_ghost_match_hooks_on_whole_batches():
    """max_physical_batch_size still works under auto (ghost): a logical batch split into physical ones takes the
    same noiseless step as hooks on the whole batch, with the same Poisson batches (reproducible sampling)."""
    x, y = _data(n=64)
    outcomes = {}
    for mode, physical in (("hooks", 64), ("auto", 8)):
        settings = _settings(mode, batch=32, physical=physical)
        outcomes[mode] = training.train(
            _model(MLP), x, y, settings, dp=_plan(0.3, steps=3), seed=0, reproducible_noise_from=7, report_epsilon=False
        )
    assert outcomes["hooks"].steps == outcomes["auto"].steps == 3
    for h, g in zip(outcomes["hooks"].model.parameters(), outcomes["auto"].model.parameters()):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_auto_is_the_default_and_the_card_and_run_json_say_which_ran(tmp_path, ledger_path):
    result = privtrain.run(
        "dp_sgd", [*TINY, "model=mlp", "recipe.max_physical_batch_size=64"], output_dir=tmp_path / "r"
    )
    assert result.metrics["steps"] == 6
    run = json.loads((result.output_dir / "run.json").read_text())
    assert run["train"]["grad_sample_mode"] == "ghost" and run["dp"]["grad_sample_mode"] == "ghost"
    assert "every trainable layer supports it" in run["dp"]["grad_sample_mode_reason"]
    card = (result.output_dir / "model_card.md").read_text()
    assert "Opacus' ghost mode (auto: ghost clipping" in card
    per_layer = privtrain.run("dp_sgd", [*TINY, "model=mlp", "recipe.clipping=per_layer"], output_dir=tmp_path / "p")
    run = json.loads((per_layer.output_dir / "run.json").read_text())
    assert run["dp"]["grad_sample_mode"] == "hooks" and "flat clipping only" in run["dp"]["grad_sample_mode_reason"]
    assert "Opacus' hooks mode (auto: hooks" in (per_layer.output_dir / "model_card.md").read_text()
