"""DP-SGD overhead: step time and peak memory of each grad_sample_mode ÷ non-private.

    python benchmarks/overhead.py                       # default model (logreg), batch 128
    python benchmarks/overhead.py --models logreg mlp cnn --batches 64 256 1024

Each configuration runs in a fresh subprocess (so peak memory is its own), and the
non-private step of the same model and batch is measured in the same subprocess,
interleaved with the DP steps, so the ratio is side by side. Memory is the peak of live
tensor memory in one step (torch.profiler, CPU) or torch.cuda.max_memory_allocated (GPU).
Writes out/overhead/{overhead.csv, overhead.md, overhead.png}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np

MODES = ("hooks", "ghost", "functorch")


def _model(name: str):
    from privtrain import models

    spec = {
        "logreg": models.ModelSpec("logreg"),
        "mlp": models.ModelSpec("mlp", hidden=(128,)),
        "cnn": models.ModelSpec("cnn", channels=(16, 32), groups=4),
    }[name]
    return models.build(spec, n_inputs=64, n_classes=10, image_shape=(1, 8, 8))


def _cpu_peak_mb(fn) -> float:
    """Peak of live CPU tensor memory during one call, from torch.profiler's allocation events."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def measure(model_name: str, batch: int, mode: str, steps: int, device: str) -> dict:
    """One configuration: seconds per step (median of interleaved rounds) and peak memory."""
    import torch
    from opacus import GradSampleModule
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.rand(batch, 64, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    crit = torch.nn.CrossEntropyLoss()

    plain = _model(model_name).to(device)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.1)

    def plain_step():
        plain_opt.zero_grad()
        crit(plain(x), y).backward()
        plain_opt.step()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = _model(model_name).to(device)
        opt = torch.optim.SGD(base.parameters(), lr=0.1)
        if mode == "ghost":
            dp_model = GradSampleModuleFastGradientClipping(base, max_grad_norm=1.0, use_ghost_clipping=True)
            dp_opt = DPOptimizerFastGradientClipping(
                opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=batch
            )
            dp_crit = DPLossFastGradientClipping(dp_model, dp_opt, crit)
        else:
            dp_model = GradSampleModule(base, force_functorch=(mode == "functorch"))
            dp_opt = DPOptimizer(opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=batch)
            dp_crit = crit

    def dp_step():
        dp_opt.zero_grad()
        dp_crit(dp_model(x), y).backward()
        dp_opt.step()

    def timed(fn, n):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / n

    for fn in (plain_step, dp_step):
        timed(fn, 3)  # warm-up
    mem = {}
    for name, fn in (("plain", plain_step), ("dp", dp_step)):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            mem[name] = (torch.cuda.max_memory_allocated() - before) / 2**20
        else:
            mem[name] = _cpu_peak_mb(fn)
    plain_t, dp_t = [], []
    for _ in range(5):  # interleave so machine noise hits both alike
        plain_t.append(timed(plain_step, steps))
        dp_t.append(timed(dp_step, steps))
    return {
        "model": model_name,
        "batch": batch,
        "mode": mode,
        "device": device,
        "plain_ms": 1e3 * float(np.median(plain_t)),
        "dp_ms": 1e3 * float(np.median(dp_t)),
        "time_ratio": float(np.median(dp_t) / np.median(plain_t)),
        "plain_peak_mb": mem["plain"],
        "dp_peak_mb": mem["dp"],
    }


def accounting_speed() -> list[dict]:
    """Seconds to get epsilon from Opacus' PRV and RDP accountants over 1e4 and 1e5 steps, and
    for the ledger to compose 10, 100 and 1,000 runs (10 distinct noise levels, as in a sweep;
    cache emptied first, so this is the cold cost)."""
    import tempfile
    from pathlib import Path

    from opacus.accountants import create_accountant

    from privtrain import ledger
    from privtrain.ledger.admission import admitted as admit_charges
    from privtrain.privacy.events import dp_sgd_event

    rows = []
    for mechanism in ("prv", "rdp"):
        for steps in (10_000, 100_000):
            acc = create_accountant(mechanism)
            acc.history = [(1.0, 0.001, steps)]
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                eps = acc.get_epsilon(delta=1e-5)
            rows.append(
                {
                    "what": f"opacus {mechanism}",
                    "size": f"{steps:,} steps",
                    "seconds": time.perf_counter() - t,
                    "epsilon": eps,
                }
            )
    for n_runs in (10, 100, 1000):
        path = Path(tempfile.mkdtemp()) / "ledger.db"
        book = ledger.open(path)
        book.warm_cache = False
        for i in range(n_runs):
            sigma = 4.0 + 0.25 * (i % 10)
            charge = ledger.Charge(
                run_id=f"r{i}",
                recipe="dp_sgd",
                source="bench",
                source_name="bench",
                unit="example",
                events=(dp_sgd_event(sample_rate=0.05, noise_multiplier=sigma, steps=300),),
                delta=1e-5,
                epsilon=1.0,
                config_hash="c",
            )
            with admit_charges(book.core, [charge]) as run:
                run.commit(charge.events)
        book._conn.execute("DELETE FROM cache")
        book._conn.commit()
        t = time.perf_counter()
        eps = book.spent("bench")
        rows.append(
            {
                "what": "ledger composition (PLD)",
                "size": f"{n_runs:,} runs",
                "seconds": time.perf_counter() - t,
                "epsilon": eps,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounting", action="store_true", help="also time the accountants and the ledger")
    parser.add_argument("--models", nargs="+", default=["logreg"])
    parser.add_argument("--batches", type=int, nargs="+", default=[128])
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one config as JSON
    args = parser.parse_args()
    if args.one:
        m, b, mode = args.one.split(",")
        print(json.dumps(measure(m, int(b), mode, args.steps, args.device)))
        return
    import pandas as pd
    from common import machine, out_dir

    rows = []
    for model in args.models:
        for batch in args.batches:
            for mode in args.modes:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{model},{batch},{mode}",
                    "--steps",
                    str(args.steps),
                    "--device",
                    args.device,
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    out = out_dir("overhead")
    frame.to_csv(out / f"overhead_{args.device}.csv", index=False)
    text = (
        f"# DP-SGD overhead ({args.device})\n\nMachine: {machine()}\n\n"
        f"Command: `python benchmarks/overhead.py {' '.join(sys.argv[1:])}`\n\n"
        + frame.to_markdown(index=False, floatfmt=".2f")
        + "\n"
    )
    (out / f"overhead_{args.device}.md").write_text(text)
    if args.accounting:
        acc = pd.DataFrame(accounting_speed())
        acc.to_csv(out / "accounting.csv", index=False)
        text += "\n## Accounting speed\n\n" + acc.to_markdown(index=False, floatfmt=".3f") + "\n"
        (out / f"overhead_{args.device}.md").write_text(text)
    print(text)
    _plot(frame, out / f"overhead_{args.device}.png")


def _plot(frame, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r.model}/{r.batch}" for r in frame.drop_duplicates(["model", "batch"]).itertuples()]
    width = 0.8 / frame["mode"].nunique()
    for i, (mode, g) in enumerate(frame.groupby("mode", sort=False)):
        ax.bar(np.arange(len(g)) + i * width, g["time_ratio"], width, label=mode)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=30, ha="right")
    ax.set_ylabel("DP step time ÷ non-private")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
