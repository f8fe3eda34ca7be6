"""What a federated run leaves behind: partition.{json,png} and accuracy.png here, and (through
:mod:`privtrain.artifacts.run_files`) config.yaml, run.json, metrics.json and model_card.md."""

from __future__ import annotations

import math
from pathlib import Path

from privtrain.artifacts import run_files
from privtrain.artifacts.run_dir import write_json
from privtrain.federated import partition as part
from privtrain.federated.task import Population

NOT_COVERED = (
    "held-out accuracy and loss (the evaluator's data); federated evaluation on the clients' local "
    "splits; nonprivate_train_loss (privacy=none only: a statistic of the training rows)"
)
INTENDED_USE = (
    "A classifier trained with privtrain's `federated` recipe (Flower): the clients' rows never left them; "
    "only model updates did. Intended for research, benchmarking and as a template for private federated "
    "training. Check each guarantee below, and its unit, before releasing the model."
)


def dataset_info(population: Population) -> dict:
    ds = population.dataset
    return {
        "name": ds.name,
        "source": ds.source.key,
        "fingerprint": ds.fingerprint,
        "n_rows": ds.n_rows,
        "n_train": int(sum(population.train_sizes())),
        "n_pool": int(len(population.y_pool)),
        "n_test": int(len(population.y_test)),
        "clients": population.num_clients,
        "partition": population.spec.identity(),
        "population": {"key": population.key, "label": population.label},
        "schema": ds.schema.source,
        "pii": ds.pii,
    }


def final_metrics(model_spec, population: Population, output_dir: Path, history: dict, wall: float) -> dict:
    """Held-out metrics of the final global model, plus the last round's federated evaluation."""
    from privtrain import training
    from privtrain.artifacts import checkpoint
    from privtrain.federated.task import build_model, shape_of

    model = build_model(model_spec, shape_of(population))
    model.load_state_dict(checkpoint.load(output_dir / "final_model.pt"))
    metrics = training.evaluate(model, population.x_test, population.y_test, population.n_classes)
    last = history["rounds"][-1] if history["rounds"] else {}
    for key in ("federated_accuracy", "federated_loss"):
        if key in last:
            metrics[key] = last[key]
    if "nonprivate_train_loss" in last:  # privacy=none only
        metrics["nonprivate_train_loss"] = last["nonprivate_train_loss"]
    metrics.update(rounds=len(history["rounds"]) - 1, wall_time_s=round(wall, 2))
    return metrics


def partition_summary(population: Population) -> dict:
    """partition.json: the clients' public sizes and the partition's spec."""
    summary = part.summary(population.train_sizes(), population.eval_sizes())
    summary.update(kind=population.spec.kind, spec=population.spec.identity())
    return summary


def write_federated_files(
    out: Path, settings, population: Population, guarantees, history: dict, summary: dict
) -> list[Path]:
    """The files only a federated run leaves: partition.{json,png} and accuracy.png."""
    from privtrain.federated import plots

    s = settings.fl
    files = [write_json(out / "partition.json", summary)]
    files.append(
        plots.partition_png(
            summary, out / "partition.png", f"{population.dataset.name}: {population.spec.kind} partition"
        )
    )
    eps = ", ".join(f"ε={g.epsilon:.3g} per {g.unit}" if g.private else f"ε=inf per {g.unit}" for g in guarantees)
    files.append(
        plots.accuracy_png(
            history["rounds"],
            out / "accuracy.png",
            f"{population.dataset.name}, {s.strategy}, privacy={s.privacy} ({eps})",
        )
    )
    return files


def run_files_of(
    settings,
    reserved,
    access,
    ledger_info: dict,
    dataset_info: dict,
    guarantees,
    metrics: dict,
    population: Population,
    history: dict,
    central,
    local,
    summary: dict,
) -> run_files.RunFiles:
    """config.yaml, run.json, metrics.json and the card of a federated run. The final global model
    (``final_model.pt``, written by the ServerApp) is the run's model: run.json names it, with the model spec and
    the public preprocessing, so ``privtrain.load`` and ``privtrain predict`` rebuild it."""
    s, n = settings.fl, population.num_clients
    return run_files.RunFiles(
        "federated",
        settings,
        reserved,
        access,
        ledger_info,
        dataset_info,
        guarantees,
        metrics,
        record={
            "model": settings.model.to_dict(),
            "outputs": {"model": "final_model.pt"},
            "schema": run_files.schema_record(population.dataset),
        },
        metrics_json={
            "history": history["rounds"],
            "not_covered": NOT_COVERED,
            "central_dp": _plain(central),
            "local_dp": _plain(local),
            "federated": {
                "engine": s.engine,
                "strategy": s.strategy,
                "rounds": s.rounds,
                "clients": n,
                "client_sampling": s.client_sampling,
                "sampling_rate": s.sample_rate(n),
                "expected_cohort": s.expected_cohort(n),
                "local_epochs": s.local_epochs,
                "client_steps": history.get("client_steps"),
                "messages_sent": history.get("messages_sent"),
                "unknown_node_messages": history.get("unknown_node_messages"),
                "client_epsilon": history.get("client_epsilon"),
            },
        },
        card={
            "intended_use": INTENDED_USE,
            "model": f"`{settings.model.name}`, the final global model after {s.rounds} rounds of {s.strategy} "
            f"over {n} clients",
            "mechanism": _mechanism(s, n, central, local),
            "not_covered": _not_covered(central, local),
            "extra_sections": [("Federated setup", _setup_text(s, population, summary))],
        },
    )


FEDERATED_NOT_COVERED = (
    "Federated evaluation on the clients' local splits (federated_accuracy, federated_loss) reads their rows "
    "without noise: it is reported, not covered.",
)
CENTRAL_NOT_COVERED = (
    "Central DP trusts the server: it sees each sampled client's clipped update before adding the noise. The "
    "guarantee covers what leaves the server (the global models), not what the server sees.",
    "The number of clients and the cohort size are treated as public.",
)
LOCAL_NOT_COVERED = (
    "Each client's number of training rows (partition.json) is reported, not covered; the mechanism does not "
    "depend on it (a client's sampling rate, steps and weight come from its public size).",
    "Floating-point and pseudo-random number generation in the clients are not hardened against side channels "
    "(Opacus secure_mode is off).",
)


def _not_covered(central, local) -> tuple[str, ...]:
    return (
        FEDERATED_NOT_COVERED
        + (CENTRAL_NOT_COVERED if central is not None else ())
        + (LOCAL_NOT_COVERED if local is not None else ())
    )


def _mechanism(s, n_clients: int, central, local) -> dict:
    """What the card says the federated mechanism did: the values the run used."""
    common = {
        "rounds": s.rounds,
        "local_epochs": s.local_epochs,
        "batch_size": s.batch_size,
        "optimizer": s.optimizer,
        "clients": n_clients,
    }
    if central is not None:
        return {
            "kind": "federated_central",
            **common,
            "lr": s.lr,
            "noise_multiplier": central.noise_multiplier,
            "clipping_norm": central.clipping_norm,
            "clipping_side": central.clipping_side,
            "sampling": central.sampling,
            "sample_rate": central.sample_rate,
            "expected_cohort": s.expected_cohort(n_clients),
            "denominator": central.denominator,
            "delta": central.delta,
        }
    if local is not None:
        return {
            "kind": "federated_local",
            **common,
            "lr": s.local_dp_lr,
            "noise_multiplier": local.noise_multiplier,
            "max_grad_norm": local.max_grad_norm,
            "accountant": local.accountant,
            "delta": local.delta,
        }
    return {"kind": "none", "what": "the global model"}


def _setup_text(s, population: Population, summary: dict) -> str:
    n = population.num_clients
    sampling = (
        f"Poisson, rate {s.sample_rate(n):.4g} (expected {s.expected_cohort(n):.4g} of {n} clients)"
        if s.client_sampling == "poisson"
        else f"fixed cohort of {s.sample_size(n)} of {n} clients"
    )
    sizes = summary["sizes"]
    return "\n".join(
        [
            f"- engine: {s.engine}; strategy: {s.strategy}; rounds: {s.rounds}; client sampling: {sampling}",
            f"- partition: {population.label}, each row's client a keyed function of "
            f"that row; rows per client (local train + eval, public by declaration): min {min(sizes)}, median "
            f"{sorted(sizes)[len(sizes) // 2]}, max {max(sizes)}; {summary['clients_without_training_rows']} client(s) "
            "without training rows",
            f"- local training: {s.local_epochs} epoch(s), batch {s.batch_size}, {s.optimizer} lr {s.lr}",
            "- federated evaluation uses each client's local split; the held-out split is the evaluator's data.",
        ]
    )


def _plain(plan) -> dict | None:
    if plan is None:
        return None
    from dataclasses import asdict

    d = asdict(plan)
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in d.items()
        if not (isinstance(v, float) and math.isnan(v))
    }
