"""Which Opacus per-sample-gradient mode a DP-SGD run uses: ``recipe.grad_sample_mode=auto`` resolved.

Every mode clips each example's whole gradient to the same norm C and adds the same noise, so the
guarantee does not depend on the choice (tests/test_ghost_clipping.py checks that ghost clipping's
per-example norms and clipping factors are hooks' on the same model and batch); only the speed does.
Opacus' ghost clipping (Li et al. 2021) takes each example's gradient norm without building the
per-example gradients and gets the clipped sum from a second backward pass: 2x non-private at
most on CPU, where hooks pay 10-20x on a 100k-parameter MLP (benchmarks/clipping_speed.py).

``auto`` picks ``ghost`` when:

- the clipping is flat (ghost clipping takes one norm per example, not one per layer);
- mixed precision is off (its norms and its clipped sum would be bfloat16: ``AMP_GHOST``);
- every trainable layer is one Opacus can clip in ghost mode without functorch: a layer with a
  ghost norm sampler (``nn.Linear``, ``nn.Embedding``: the norm from activations and backprops,
  never the per-example gradient) or with a per-sample-gradient sampler (``nn.Conv2d``,
  ``nn.GroupNorm``, ``nn.LayerNorm``, ...: Opacus' fast gradient clipping builds that layer's
  per-example gradients, takes their norms and drops them);
- no parameter is shared between layers (ghost clipping refuses tied weights).

Otherwise ``hooks``, and the reason is recorded in run.json and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

AUTO = "auto"


@dataclass(frozen=True)
class ClippingMode:
    """The mode a run uses, and why (for run.json and the model card)."""

    mode: str  # hooks | ghost | functorch
    reason: str


def ghost_layers(model: nn.Module) -> tuple[dict[str, int], list[str]]:
    """How Opacus' ghost mode would clip ``model``'s trainable layers.

    Returns:
        ({"ghost norm": n, "per-sample-gradient norm": m}: layers by path, [layers ghost mode cannot clip
        without functorch, or whose parameters are shared, as "name (Type)"]).
    """
    from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping

    counts = {"ghost norm": 0, "per-sample-gradient norm": 0}
    unsupported: list[str] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        label = f"{name or '(root)'} ({type(module).__name__})"
        if any(id(p) in seen for p in own):
            unsupported.append(f"{label}: shares parameters with another layer")
        seen.update(id(p) for p in own)
        if type(module) in GradSampleModuleFastGradientClipping.NORM_SAMPLERS:
            counts["ghost norm"] += 1
        elif type(module) in GradSampleModule.GRAD_SAMPLERS:
            counts["per-sample-gradient norm"] += 1
        else:
            unsupported.append(label)
    return counts, unsupported


def choose(requested: str, model: nn.Module, *, clipping: str, amp: bool) -> ClippingMode:
    """Resolve ``requested`` (``auto`` or an explicit mode) for a private run of ``model``.

    Args:
        requested: ``recipe.grad_sample_mode``: ``auto``, ``hooks``, ``ghost`` or ``functorch``.
        clipping: ``flat`` or ``per_layer``.
        amp: bfloat16 autocast on.

    Returns:
        The mode to run and why. An explicit mode is kept as asked (the plan validates it).
    """
    if requested != AUTO:
        return ClippingMode(requested, f"recipe.grad_sample_mode={requested} as configured")
    if clipping != "flat":
        return ClippingMode(
            "hooks", f"auto: hooks, since ghost clipping supports flat clipping only (recipe.clipping={clipping})"
        )
    if amp:
        return ClippingMode(
            "hooks",
            "auto: hooks, since ghost clipping would take its norms in bfloat16 under "
            "recipe.amp=true (hooks clip in float32)",
        )
    counts, unsupported = ghost_layers(model)
    if unsupported:
        shown = ", ".join(unsupported[:3]) + (f" and {len(unsupported) - 3} more" if len(unsupported) > 3 else "")
        return ClippingMode("hooks", f"auto: hooks, since Opacus' ghost clipping cannot clip {shown}")
    parts = [f"{n} layer(s) by {how}" for how, n in counts.items() if n]
    return ClippingMode(
        "ghost", "auto: ghost clipping, since every trainable layer supports it (" + "; ".join(parts) + ")"
    )
