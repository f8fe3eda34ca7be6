"""One-run audit: ε lower bound vs claimed ε, the mutant table, and what the audit costs.

    python benchmarks/one_run_audit.py [--eps 1 2 4 8] [--runs 3] [--canaries 1000] [--mutant-eps 2]
                                       [--render-only]

On the default digits configuration (logreg, 360 steps, batch 128, the shipped defaults; only the claimed ε
set), for each claimed ε and run it audits the configuration in white-box and in black-box mode
(separately, each with its own Bonferroni correction) and times one plain training of the same
configuration beside it. Then each injected bug (PRIVTRAIN_MUTANT) at claimed ε = --mutant-eps, --runs
times, white-box, and a sweep of the number of canaries at ε = 2 and 8. Writes
out/one_run_audit/{tightness.csv, mutants.csv, canaries.csv, README.md, tightness.png}.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import pandas as pd
from common import machine, out_dir

BASE = ["recipe.progress=false"]


def _planned(eps: float):
    from privtrain import config, recipes

    settings = config.settings("dp_sgd", config.compose("dp_sgd", [*BASE, f"privacy.target_epsilon={eps}"]))
    return recipes.get("dp_sgd").plan(settings)


def _audit(eps: float, mode: str, canaries: int, out) -> dict:
    from privtrain.api import audit_one_run

    return audit_one_run(
        "dp_sgd", [*BASE, f"privacy.target_epsilon={eps}"], output_dir=out, mode=mode, canaries=canaries
    )


def _plain_training_seconds(eps: float) -> float:
    """One training of the same configuration on the same number of public rows, no canary, no probe."""
    import numpy as np

    from privtrain.audit import one_run_data as data

    job = data.job_from_planned(_planned(eps))
    x, y = data.public_rows(job, job.rows, np.random.default_rng(0))
    started = time.perf_counter()
    data.train(job, data.build_model(job), x, y, None)
    return time.perf_counter() - started


def tightness(args, out) -> pd.DataFrame:
    rows = []
    for run in range(args.runs):
        for eps in args.eps:
            plain = _plain_training_seconds(eps)
            for mode in ("whitebox", "blackbox"):
                a = _audit(eps, mode, args.canaries, out / "reports" / f"{mode}-{eps}-{run}")
                rows.append(
                    {
                        "claimed_eps": a["claimed"]["epsilon"],
                        "target": eps,
                        "run": run,
                        "mode": mode,
                        "lower_bound": a["epsilon_lower_bound"],
                        "best_attack": a["best_attack"],
                        **{f"lb_{k}": v["epsilon_lower"] for k, v in a["attacks"].items()},
                        "mu_hat": a["attacks"].get("gauss", a["attacks"].get("blackbox_gauss"))["mu"],
                        "clt_mu": (a["expected"] or {}).get("clt_mu"),
                        "canaries": a["canaries"],
                        "red_flag": a["red_flag"],
                        "audit_seconds": a["seconds"]["total"],
                        "plain_training_seconds": plain,
                        "cost_multiple": a["seconds"]["total"] / plain,
                    }
                )
                print(
                    f"eps={eps} run={run} {mode}: lower bound {a['epsilon_lower_bound']:.3f} "
                    f"({a['seconds']['total']:.1f} s, plain training {plain:.1f} s)",
                    flush=True,
                )
    return pd.DataFrame(rows)


def mutants(args, out) -> pd.DataFrame:
    from privtrain.privacy.mutants import MUTANTS

    rows = []
    for run in range(args.runs):
        for mutant in (None, *MUTANTS):
            if mutant is None:
                os.environ.pop("PRIVTRAIN_MUTANT", None)
            else:
                os.environ["PRIVTRAIN_MUTANT"] = mutant
            try:
                a = _audit(args.mutant_eps, "whitebox", args.canaries, out / "reports" / f"mutant-{mutant}-{run}")
            finally:
                os.environ.pop("PRIVTRAIN_MUTANT", None)
            s = a["structure"]
            rows.append(
                {
                    "mutant": mutant or "(correct code)",
                    "run": run,
                    "claimed_eps": a["claimed"]["epsilon"],
                    "lower_bound": a["epsilon_lower_bound"],
                    "best_attack": a["best_attack"],
                    **{f"lb_{k}": v["epsilon_lower"] for k, v in a["attacks"].items()},
                    "structure": ", ".join(s["varies_with_rows"] + s["differs_from_plan"]) or "-",
                    "flagged": a["red_flag"],
                    "reasons": " | ".join(a["reasons"]),
                }
            )
            print(f"{mutant}: {a['epsilon_lower_bound']:.3f} flagged={a['red_flag']}", flush=True)
    return pd.DataFrame(rows)


def canary_sweep(args, out) -> pd.DataFrame:
    rows = []
    for run in range(args.runs):
        for eps in (2, 8):
            for m in (250, 500, 1000, 1465):
                a = _audit(eps, "whitebox", m, out / "reports" / f"canaries-{eps}-{m}-{run}")
                rows.append(
                    {
                        "target": eps,
                        "claimed_eps": a["claimed"]["epsilon"],
                        "canaries": a["canaries"],
                        "run": run,
                        "lower_bound": a["epsilon_lower_bound"],
                    }
                )
    return pd.DataFrame(rows)


def _mean_std(frame, by, value, fmt="{:.2f}"):
    g = frame.groupby(by)[value].agg(["mean", "std", "min", "max"])
    return g.apply(
        lambda r: (
            f"{fmt.format(r['mean'])} ± {fmt.format(r['std'])} ({fmt.format(r['min'])} to {fmt.format(r['max'])})"
        ),
        axis=1,
    )


def render(t: pd.DataFrame, mut: pd.DataFrame, can: pd.DataFrame, out, command: str) -> None:
    lines = [
        "# One-run audit: lower bound vs claim, mutants, cost",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}; CPU only.",
        "",
        "Default digits configuration (logreg, batch 128, 360 steps, C = 0.5, PRV accountant, δ = 1e-5, "
        "1,465 training rows), 95% confidence, each mode audited on its own (white-box: 3 attacks, "
        "black-box: 2, Bonferroni). Mean ± std (min to max) over runs.",
        "",
        "## Lower bound vs claimed ε",
        "",
        "| claimed ε | white-box lower bound | black-box lower bound | white-box / claim | canaries | "
        "audit ÷ plain training (white-box) |",
        "|---|---|---|---|---|---|",
    ]
    wb, bb = t[t["mode"] == "whitebox"], t[t["mode"] == "blackbox"]
    wb_cell, bb_cell = _mean_std(wb, "target", "lower_bound"), _mean_std(bb, "target", "lower_bound")
    for eps in sorted(t["target"].unique()):
        ratio = (wb[wb["target"] == eps]["lower_bound"] / wb[wb["target"] == eps]["claimed_eps"]).mean()
        cost = wb[wb["target"] == eps]["cost_multiple"].median()
        lines.append(
            f"| {eps:g} | {wb_cell[eps]} | {bb_cell[eps]} | {ratio:.2f} | "
            f"{int(wb[wb['target'] == eps]['canaries'].iloc[0])} | {cost:.1f}× |"
        )
    lines += [
        "",
        "Wall time per audit (seconds, median): white-box "
        f"{wb['audit_seconds'].median():.1f}, black-box {bb['audit_seconds'].median():.1f}; one plain training "
        f"of the same configuration {t['plain_training_seconds'].median():.1f}. The white-box audit is one "
        "training with canaries, a replay of the first steps and three structural probes; the black-box audit "
        "one training.",
        "",
        "## Mutants (white-box)",
        "",
        f"Claimed ε = {mut['claimed_eps'].iloc[0]:.3g}; every run of every mutant:",
        "",
        "| mutant | lower bound | gauss | steinke | replay | structure | flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in mut.groupby("mutant", sort=False):
        lines.append(
            f"| {name} | {_cell(g['lower_bound'])} | {_cell(g['lb_gauss'])} | {_cell(g['lb_steinke'])} | "
            f"{_cell(g['lb_replay'])} | {', '.join(sorted(set(g['structure'])))} | "
            f"{int(g['flagged'].sum())} of {len(g)} |"
        )
    if len(can):
        lines += ["", "## Canaries (white-box)", "", "| claimed ε | canaries | lower bound |", "|---|---|---|"]
        for (eps, m), g in can.groupby(["target", "canaries"]):
            lines.append(f"| {eps:g} | {m} | {_cell(g['lower_bound'])} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    _plot(t, out)


def _cell(values) -> str:
    return " / ".join(f"{v:.2f}" if v != float("inf") else "∞" for v in values)


def _plot(t: pd.DataFrame, out) -> None:
    from privtrain.figures import figure

    fig, ax = figure(figsize=(5, 4.2))
    top = float(t["claimed_eps"].max()) * 1.05
    ax.plot([0, top], [0, top], "k:", label="claimed ε")
    ax.plot([0, top], [0, top / 2], color="0.6", ls="--", label="half the claim")
    for mode, marker in (("whitebox", "o"), ("blackbox", "s")):
        g = t[t["mode"] == mode]
        ax.scatter(g["claimed_eps"], g["lower_bound"], marker=marker, label=f"{mode} lower bound", alpha=0.8)
    ax.set_xlabel("claimed ε (δ = 1e-5)")
    ax.set_ylabel("ε lower bound, 95% confidence")
    ax.set_title("One-run audit, digits default, 1,000 canaries")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "tightness.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--mutant-eps", type=float, default=2.0)
    parser.add_argument("--no-canary-sweep", action="store_true")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    out = out_dir("one_run_audit")
    command = " ".join(["python benchmarks/one_run_audit.py", *os.sys.argv[1:]])
    if args.render_only:
        render(
            pd.read_csv(out / "tightness.csv"),
            pd.read_csv(out / "mutants.csv"),
            pd.read_csv(out / "canaries.csv") if (out / "canaries.csv").exists() else pd.DataFrame(),
            out,
            command,
        )
        return
    os.environ["PRIVTRAIN_LEDGER"] = str(out / "ledger.db")  # never opened: the audit charges nothing
    t = tightness(args, out)
    t.to_csv(out / "tightness.csv", index=False)
    mut = mutants(args, out)
    mut.to_csv(out / "mutants.csv", index=False)
    can = pd.DataFrame() if args.no_canary_sweep else canary_sweep(args, out)
    can.to_csv(out / "canaries.csv", index=False)
    render(t, mut, can, out, command)
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
