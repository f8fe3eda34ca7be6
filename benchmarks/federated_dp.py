"""DP-FedAvg with Poisson client sampling on digits: test accuracy vs client-level ε and population size.

    python benchmarks/federated_dp.py            # the full version (~35 min on 2 cores)
    python benchmarks/federated_dp.py --quick    # a ~3-minute smoke version

1. **Tuning on a validation split** (never the test split). The training pool of the benchmark's
   population (digits minus its held-out split, ``fl.partition_seed=0``) is written to a CSV; the
   federated recipe runs on that CSV with ``fl.partition_seed=100``, whose own held-out 20% of the
   pool is the validation split. At client-level ε = 3 with 500 clients, coordinate descent from a
   base setting picks, in this order: (rounds, sampling rate q) at a fixed budget of T·q = 6 rounds
   per client (the cost of a run grows with T·q·N), the clipping norm C, the client learning rate,
   the local epochs. Validation seeds 100 and 101.
2. **Accuracy**: the chosen setting, client-level DP-FedAvg at ε = 1, 3, 8 (δ = 1e-5) with 100, 500
   and 1,000 clients (the same q for every population: the expected cohort is q·N), seeds 0, 1, 2
   (initialisation; the sampling and the noise are secret), against non-private FedAvg with the same
   population, sampling and client training. Test accuracy on the population's held-out split.
3. **Ray reuse**: the wall time of the same 10-run sweep in one process with Ray started and stopped
   per run (``fl.simulation.reuse_ray=false``) and with one runtime reused.

Writes out/federated_dp/{validation.csv, trials.csv, sweep.csv, table.md, accuracy.png}; uses its
own ledger (``PRIVTRAIN_LEDGER``: a new file in that folder per invocation).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import pandas as pd
from common import machine, out_dir

DELTA = 1e-5
BASE = {"rounds": 30, "q": 0.2, "clip": 1.0, "lr": 0.5, "epochs": 1}
AXES = [  # coordinate descent, in this order; (rounds, q) keeps T·q = 6
    ("rounds_q", [(15, 0.4), (30, 0.2), (60, 0.1)]),
    ("clip", [0.3, 1.0, 3.0]),
    ("lr", [0.25, 0.5, 1.0]),
    ("epochs", [1, 3]),
]


def overrides(setting: dict, clients: int, eps: float, seed: int) -> list[str]:
    """Hydra overrides of one federated run: DP-FedAvg at ``eps`` (inf: non-private FedAvg)."""
    common = [
        f"fl.num_clients={clients}",
        f"fl.rounds={setting['rounds']}",
        f"fl.sampling_rate={setting['q']}",
        f"fl.lr={setting['lr']}",
        f"fl.local_epochs={setting['epochs']}",
        f"seed={seed}",
        "fl.federated_evaluation=false",
        "recipe.progress=false",
    ]
    if math.isinf(eps):
        return [*common, "privacy=none", "ledger.allow_non_private=true"]
    return [
        *common,
        "privacy=central",
        f"privacy.target_epsilon={eps}",
        f"privacy.delta={DELTA}",
        f"privacy.clipping_norm={setting['clip']}",
    ]


def run(extra: list[str], tag: str, out: Path) -> tuple[float, float]:
    """(held-out accuracy, seconds) of one run of the federated recipe."""
    import privtrain

    started = time.perf_counter()
    result = privtrain.run("federated", extra, output_dir=out / "runs" / tag)
    return result.metrics["accuracy"], time.perf_counter() - started


def validation_data(out: Path) -> list[str]:
    """The training pool of the benchmark's population as a CSV (with digits' public schema): overrides."""
    from privtrain import data
    from privtrain.data.assign import held_out

    frame = data.load(data.DatasetSpec("digits")).frame
    pool = frame[~held_out(frame, seed=0, test_size=0.2)]  # the test rows never reach the tuning
    path = out / "pool.csv"
    pool.to_csv(path, index=False)
    columns = ", ".join(f"{c}: {{min: 0, max: 16}}" for c in pool.columns if c != "target")
    schema = f"+dataset.schema={{{columns}, target: {{categories: [0,1,2,3,4,5,6,7,8,9]}}}}"
    return [
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=target",
        schema,
        "fl.partition_seed=100",
        f"dataset.public_n={len(pool)}",
    ]


def tune(out: Path, clients: int, eps: float, seeds: list[int], axes, base: dict) -> tuple[dict, pd.DataFrame]:
    """Coordinate descent over ``axes`` from ``base`` on the validation split; returns the best setting and
    every trial."""
    data = validation_data(out)
    rows, cache = [], {}
    best = dict(base)

    def score(setting: dict) -> float:
        key = tuple(sorted(setting.items()))
        if key not in cache:
            accs = []
            for seed in seeds:
                acc, secs = run([*data, *overrides(setting, clients, eps, seed)], f"val-{len(rows)}", out)
                rows.append({**setting, "seed": seed, "validation_accuracy": acc, "seconds": secs})
                accs.append(acc)
            cache[key] = sum(accs) / len(accs)
            print(f"validation {setting}: {cache[key]:.3f}", flush=True)
        return cache[key]

    for name, values in axes:
        candidates = []
        for value in values:
            setting = dict(best, **({"rounds": value[0], "q": value[1]} if name == "rounds_q" else {name: value}))
            candidates.append((score(setting), setting))
        best = max(candidates, key=lambda c: c[0])[1]
    return best, pd.DataFrame(rows)


def accuracy(out: Path, setting: dict, populations, epsilons, seeds) -> pd.DataFrame:
    rows = []
    for clients in populations:
        for seed in seeds:
            for eps in [*epsilons, math.inf]:
                acc, secs = run(overrides(setting, clients, eps, seed), f"test-{clients}-{eps}-{seed}", out)
                rows.append({"clients": clients, "epsilon": eps, "seed": seed, "accuracy": acc, "seconds": secs})
                print(f"clients={clients} eps={eps} seed={seed}: {acc:.3f} ({secs:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def sweep(out: Path, runs: int) -> pd.DataFrame:
    """The same ``runs``-run sweep (10 clients, central DP, 3 rounds, seeds 0..runs-1) without, then with, Ray reuse."""
    from privtrain.federated import runtime

    rows = []
    for reuse in (False, True):
        runtime.shutdown()  # each sweep starts without a runtime
        started = time.perf_counter()
        for seed in range(runs):
            _, secs = run(
                [
                    "fl.rounds=3",
                    "fl.local_epochs=1",
                    f"seed={seed}",
                    "recipe.progress=false",
                    f"fl.simulation.reuse_ray={str(reuse).lower()}",
                ],
                f"sweep-{reuse}-{seed}",
                out,
            )
            rows.append({"reuse_ray": reuse, "seed": seed, "seconds": secs})
        print(f"sweep reuse_ray={reuse}: {time.perf_counter() - started:.1f} s", flush=True)
    return pd.DataFrame(rows)


def table(trials: pd.DataFrame) -> str:
    """Markdown: mean ± std per (clients, ε), non-private, and the gap to non-private."""
    epsilons = sorted(e for e in trials.epsilon.unique() if math.isfinite(e))
    head = (
        "| clients | "
        + " | ".join(f"ε={e:g}" for e in epsilons)
        + " | non-private | "
        + " | ".join(f"gap at ε={e:g}" for e in epsilons)
        + " |"
    )
    lines = [head, "|" + "---|" * (2 + 2 * len(epsilons))]
    for clients, group in trials.groupby("clients"):
        stats = group.groupby("epsilon").accuracy.agg(["mean", "std"]).fillna(0.0)
        cells = [f"{stats.loc[e, 'mean']:.3f} ± {stats.loc[e, 'std']:.3f}" for e in [*epsilons, math.inf]]
        gaps = [f"{stats.loc[e, 'mean'] - stats.loc[math.inf, 'mean']:+.3f}" for e in epsilons]
        lines.append(f"| {clients} | " + " | ".join(cells + gaps) + " |")
    return "\n".join(lines) + "\n"


def plot(trials: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for clients, group in trials.groupby("clients"):
        stats = group.groupby("epsilon").accuracy.agg(["mean", "std"]).fillna(0.0)
        private = stats[[math.isfinite(e) for e in stats.index]]
        line = ax.errorbar(
            private.index,
            private["mean"],
            yerr=private["std"],
            marker="o",
            capsize=3,
            label=f"DP-FedAvg, {clients} clients",
        )
        ax.axhline(
            stats.loc[math.inf, "mean"],
            ls="--",
            color=line[0].get_color(),
            alpha=0.7,
            label=f"non-private, {clients} clients",
        )
    ax.set_xscale("log")
    ticks = sorted(e for e in trials.epsilon.unique() if math.isfinite(e))
    ax.set_xticks(ticks, [f"{e:g}" for e in ticks])
    ax.minorticks_off()
    ax.set_xlabel("client-level ε (δ = 1e-5)")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits: DP-FedAvg with Poisson client sampling", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~3-minute smoke version")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/out/federated_dp)")
    args = parser.parse_args(argv)
    out = args.out or out_dir("federated_dp")
    out.mkdir(parents=True, exist_ok=True)
    # Its own ledger, a new file per invocation (the user's stays clean; an earlier one is never replaced,
    # which the ledger's anchors would rightly report as tampering).
    os.environ["PRIVTRAIN_LEDGER"] = str(out / f"ledger-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.db")
    started = time.perf_counter()
    if args.quick:
        base, axes, val_seeds, populations, epsilons, seeds, sweep_runs = (
            dict(BASE, rounds=10),
            [("clip", [1.0, 3.0])],
            [100],
            [100],
            [3.0],
            [0],
            3,
        )
    else:
        base, axes, val_seeds, populations, epsilons, seeds, sweep_runs = (
            BASE,
            AXES,
            [100, 101],
            [100, 500, 1000],
            [1.0, 3.0, 8.0],
            [0, 1, 2],
            10,
        )
    setting, validation = tune(out, 500 if not args.quick else 100, 3.0, val_seeds, axes, base)
    validation.to_csv(out / "validation.csv", index=False)
    print(f"chosen on validation: {setting}", flush=True)
    trials = accuracy(out, setting, populations, epsilons, seeds)
    trials.to_csv(out / "trials.csv", index=False)
    timing = sweep(out, sweep_runs)
    timing.to_csv(out / "sweep.csv", index=False)
    plot(trials, out / "accuracy.png")
    before, after = (timing[timing.reuse_ray == r].seconds.sum() for r in (False, True))
    cmd = "python benchmarks/federated_dp.py" + (" --quick" if args.quick else "")
    text = "\n".join(
        [
            "# DP-FedAvg with Poisson client sampling on digits\n",
            f"Command: `{cmd}`  ",
            f"Machine: {machine()}  ",
            f"Wall time: {(time.perf_counter() - started) / 60:.1f} min\n",
            f"Chosen on the validation split (client-level ε=3, {500 if not args.quick else 100} clients, seeds "
            f"{val_seeds}): rounds {setting['rounds']}, sampling rate q={setting['q']} (expected cohort q·N), clipping "
            f"norm {setting['clip']}, client lr {setting['lr']}, local epochs {setting['epochs']}.\n",
            f"Test accuracy, mean ± std over seeds {seeds} (δ = {DELTA:g}):\n",
            table(trials),
            f"Sweep of {sweep_runs} runs in one process: {before:.1f} s with Ray started per run, {after:.1f} s reusing "
            f"one runtime ({before / after:.2f}x).\n",
            "![accuracy](accuracy.png)\n",
        ]
    )
    (out / "table.md").write_text(text)
    print(text)
    return out


if __name__ == "__main__":
    main()
