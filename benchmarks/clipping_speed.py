"""Clipping speed: a DP-SGD step ÷ a non-private step, per per-sample-gradient mode and model size.

    python benchmarks/clipping_speed.py                 # CPU, 1 thread: ~4 min on 2 cores
    python benchmarks/clipping_speed.py --device cuda   # the same on a GPU (benchmarks/gpu_smoke.sh)

Three models (an MLP of ~100k parameters, a small CNN of ~1M, a transformer encoder of ~10M) train
one step at a time through privtrain's own Opacus parts (:func:`privtrain.privacy.opacus_parts.make_private`,
the DP optimizer, the ghost-clipping loss) in modes hooks, functorch and ghost, and without DP. For
each model the non-private step and the DP step of every mode run in interleaved rounds on the same
fixed batch in one process, and the ratio is the median DP step over the median non-private step. functorch is
skipped at 10M by default (``--modes`` to add it): it is the slowest and its per-example gradients
of 10M parameters take GBs. Also reports what ``recipe.grad_sample_mode=auto`` picks for each model.
Writes benchmarks/out/clipping_speed/clipping_speed_{device}.{csv,md,png}.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # privtrain from this checkout


class Attention(nn.Module):
    """Multi-head self-attention from nn.Linear layers (Opacus clips each of them; nn.MultiheadAttention
    would need opacus.layers.DPMultiheadAttention)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.qkv, self.out = heads, nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x):
        b, t, w = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, t, w))


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class Encoder(nn.Module):
    """A pre-norm transformer encoder over token ids, mean-pooled into a classifier."""

    def __init__(self, vocab: int, length: int, width: int, depth: int, heads: int, classes: int) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(length, width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, classes)

    def forward(self, ids):
        where = (
            torch.arange(ids.shape[1], device=ids.device).expand_as(ids).contiguous()
        )  # batch-first, for per-example gradients
        x = self.tokens(ids) + self.positions(where)
        return self.head(self.norm(self.blocks(x)).mean(1))


def cnn() -> nn.Module:
    layers, c_in = [], 3
    for c in (32, 64, 128):
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.GroupNorm(8, c), nn.ReLU(), nn.AvgPool2d(2)]
        c_in = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 384), nn.ReLU(), nn.Linear(384, 10))


def models(device: str) -> dict:
    """name -> (factory, inputs, labels); the batch sizes keep the CPU run short."""
    g = torch.Generator().manual_seed(0)
    return {
        "mlp-100k": (
            lambda: nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)),
            torch.randn(128, 256, generator=g),
            torch.randint(0, 10, (128,), generator=g),
        ),
        "cnn-1M": (cnn, torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)),
        "transformer-10M": (
            lambda: Encoder(vocab=1000, length=16, width=512, depth=3, heads=8, classes=2),
            torch.randint(0, 1000, (32, 16), generator=g),
            torch.randint(0, 2, (32,), generator=g),
        ),
    }


def plain_stepper(factory, x, y):
    """A non-private SGD step on the fixed batch."""
    torch.manual_seed(0)
    model = factory().to(x.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
        opt.step()

    return step


def dp_stepper(factory, x, y, mode: str):
    """A DP-SGD step on the fixed batch, through privtrain's make_private (noise 1, clip 1, divisor the batch)."""
    from privtrain.privacy.dp_sgd import DpSgdPlan
    from privtrain.privacy.opacus_parts import float32_grad_samples, make_private
    from privtrain.training import TrainSettings

    torch.manual_seed(0)
    model = factory().to(x.device)
    settings = TrainSettings(
        epochs=1,
        batch_size=len(y),
        max_physical_batch_size=len(y),
        optimizer="sgd",
        lr=0.01,
        grad_sample_mode=mode,
        progress=False,
    )
    plan = DpSgdPlan(
        noise_multiplier=1.0,
        sample_rate=0.01,
        steps=10**6,
        delta=1e-5,
        max_grad_norm=1.0,
        accountant="rdp",
        epsilon=float("inf"),
    )
    rows = np.zeros((len(y), 1), dtype=np.float32)  # the loader is not used: every step takes the fixed batch
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        rows,
        y.cpu().numpy(),
        plan,
        settings,
        resume=None,
        reproducible_noise_from=None,
        device=x.device,
        world=None,
    )

    def step():
        private.criterion(private.model(x), y).backward()
        float32_grad_samples(private.optimizer)
        private.optimizer.step()
        private.optimizer.zero_grad(set_to_none=True)

    return step


def measure(name: str, modes: list[str], device: str, rounds: int, steps: int) -> list[dict]:
    """Median ms of a non-private step and of a DP step in each mode, timed in ``rounds`` interleaved rounds
    (non-private, then each mode, ``steps`` steps each, more for fast models), so the machine's noise hits all
    alike."""
    from privtrain.privacy.clipping_mode import choose

    factory, x, y = models(device)[name]
    x, y = x.to(device), y.to(device)

    from common import seconds_per_step

    def timed(fn) -> float:
        return seconds_per_step(fn, steps, device)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus/torch notes on secure RNG and full backward hooks
        fns = {"non-private": plain_stepper(factory, x, y), **{m: dp_stepper(factory, x, y, m) for m in modes}}
        for fn in fns.values():
            fn()  # warm-up
        # ~0.1 s of non-private steps per round (at most 30 steps): a 2 ms step timed 3 times is mostly noise
        steps = max(steps, min(30, int(0.1 / max(timed(fns["non-private"]), 1e-6))))
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():
                times[k].append(timed(fn))
    model = factory()
    plain = float(np.median(times["non-private"]))
    common = {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": len(y),
        "device": device,
        "plain_ms": 1e3 * plain,
        "auto_picks": choose("auto", model, clipping="flat", amp=False).mode,
    }
    common["steps_per_round"] = steps
    return [
        {**common, "mode": m, "dp_ms": 1e3 * float(np.median(times[m])), "ratio": float(np.median(times[m])) / plain}
        for m in modes
    ]


def plot(frame, path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = frame.pivot(index="model", columns="mode", values="ratio").reindex(frame["model"].unique())
    ax = table.plot.bar(figsize=(7, 4), rot=0)
    ax.axhline(2.5, color="grey", linestyle="--", linewidth=1, label="CPU target 2.5x")
    ax.set_ylabel("DP step / non-private step")
    ax.set_title(f"Per-sample clipping cost ({device}, median of interleaved rounds)")
    ax.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=120)
    plt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["mlp-100k", "cnn-1M", "transformer-10M"])
    parser.add_argument("--modes", nargs="+", default=["hooks", "functorch", "ghost"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", help="output folder (default benchmarks/out/clipping_speed)")
    args = parser.parse_args()
    import pandas as pd
    from common import machine, out_dir

    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        modes = [
            m
            for m in args.modes
            if not (name.startswith("transformer") and m == "functorch" and "--modes" not in sys.argv)
        ]  # see the module docstring
        rounds = args.rounds if not name.startswith("transformer") else max(3, args.rounds - 2)
        for row in measure(name, modes, args.device, rounds, args.steps):
            rows.append(row)
            print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    frame = pd.DataFrame(rows)[
        [
            "model",
            "parameters",
            "batch",
            "device",
            "mode",
            "plain_ms",
            "dp_ms",
            "ratio",
            "auto_picks",
            "steps_per_round",
        ]
    ]
    out = Path(args.out) if args.out else out_dir("clipping_speed")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"clipping_speed_{args.device.replace(':', '')}"
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(
        f"# Clipping speed ({args.device}, {torch.get_num_threads()} thread(s))\n\nMachine: {machine()}\n\n"
        f"Command: `python benchmarks/clipping_speed.py {' '.join(sys.argv[1:])}`\n\n"
        "ratio = median DP step / median non-private step, interleaved rounds on the same batch, same process.\n\n"
        + frame.to_markdown(index=False, floatfmt=".2f")
        + "\n"
    )
    plot(frame, stem.with_suffix(".png"), args.device)
    print(f"wrote {stem}.{{csv,md,png}}")


if __name__ == "__main__":
    main()
