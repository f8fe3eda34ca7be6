"""What a federated run leaves behind: metrics.json, partition.{json,png}, accuracy.png, model_card.md."""

from __future__ import annotations

import math
from pathlib import Path

from privtrain.artifacts import model_card, sealed
from privtrain.artifacts.record import RunRecord
from privtrain.artifacts.run_dir import write_json, write_text
from privtrain.federated import partition as part
from privtrain.federated.task import Population

NOT_COVERED = ("held-out accuracy and loss (the evaluator's data); federated evaluation on the clients' local "
               "splits; nonprivate_train_loss (privacy=none only: a statistic of the training rows)")
INTENDED_USE = (
    "A classifier trained with privtrain's `federated` recipe (Flower): the clients' rows never left them; "
    "only model updates did. Intended for research, benchmarking and as a template for private federated "
    "training. Check each guarantee below, and its unit, before releasing the model."
)


def dataset_info(population: Population) -> dict:
    ds = population.dataset
    return {"name": ds.name, "source": ds.source.key, "fingerprint": ds.fingerprint, "n_rows": ds.n_rows,
            "n_train": int(sum(population.train_sizes())), "n_pool": int(len(population.y_pool)),
            "n_test": int(len(population.y_test)),
            "clients": population.num_clients, "partition": population.spec.identity(),
            "population": {"key": population.key, "label": population.label}, "schema": ds.schema.source,
            "pii": ds.pii}


def final_metrics(model_spec, population: Population, output_dir: Path, history: dict, wall: float) -> dict:
    """Held-out metrics of the final global model, plus the last round's federated evaluation."""
    from privtrain import training
    from privtrain.federated.task import build_model, shape_of

    model = build_model(model_spec, shape_of(population))
    model.load_state_dict(sealed.load_torch(output_dir / "final_model.pt"))
    metrics = training.evaluate(model, population.x_test, population.y_test, population.n_classes)
    last = history["rounds"][-1] if history["rounds"] else {}
    for key in ("federated_accuracy", "federated_loss"):
        if key in last:
            metrics[key] = last[key]
    if "nonprivate_train_loss" in last:  # privacy=none only
        metrics["nonprivate_train_loss"] = last["nonprivate_train_loss"]
    metrics.update(rounds=len(history["rounds"]) - 1, wall_time_s=round(wall, 2))
    return metrics


def write_artifacts(out: Path, settings, population: Population, dataset_info: dict, guarantees, metrics: dict,
                    history: dict, central, local, ledger_info: dict, run_id: str, sbom: dict | None = None
                    ) -> list[Path]:
    from dataclasses import asdict

    from privtrain.federated import plots

    s = settings.fl

    out.mkdir(parents=True, exist_ok=True)
    summary = part.summary(population.train_sizes(), population.eval_sizes())
    summary.update(kind=population.spec.kind, spec=population.spec.identity())
    ds = population.dataset
    record = RunRecord(
        recipe="federated", run_id=run_id, seed=settings.seed, config_hash=settings.config_hash,
        fingerprint=ds.fingerprint, source={"key": dataset_info["source"], "name": dataset_info["name"],
                                            "kind": ds.source.kind},
        dataset=settings.dataset.to_dict(), guarantees=[g.to_dict() for g in guarantees],
        audit=asdict(settings.audit), ledger={"path": ledger_info["path"], "allow_non_private":
                                              settings.ledger.allow_non_private,
                                              "default_budget": settings.ledger.default_budget,
                                              "governance": ledger_info.get("governance")},
        model=asdict(settings.model), outputs={"model": "final_model.pt"})
    final = sealed.seal_in_place(out / "final_model.pt")  # Flower's server app wrote it in the clear
    files = [write_text(out / "config.yaml", settings.config_yaml), final, record.write(out)]
    files.append(write_json(out / "partition.json", summary))
    files.append(plots.partition_png(summary, out / "partition.png",
                                     f"{population.dataset.name}: {population.spec.kind} partition"))
    eps = ", ".join(f"ε={g.epsilon:.3g} per {g.unit}" if g.private else f"ε=inf per {g.unit}" for g in guarantees)
    files.append(plots.accuracy_png(history["rounds"], out / "accuracy.png",
                                    f"{population.dataset.name}, {s.strategy}, privacy={s.privacy} ({eps})"))
    files.append(write_json(out / "metrics.json", {
        "recipe": "federated", "metrics": metrics, "history": history["rounds"],
        "guarantee": guarantees[0].to_dict(), "guarantees": [g.to_dict() for g in guarantees],
        "dataset": dataset_info, "ledger": ledger_info,
        "federated": {"engine": s.engine, "strategy": s.strategy, "rounds": s.rounds,
                      "clients": population.num_clients, "client_sampling": s.client_sampling,
                      "sampling_rate": s.sample_rate(population.num_clients),
                      "expected_cohort": s.expected_cohort(population.num_clients),
                      "local_epochs": s.local_epochs, "client_steps": history.get("client_steps"),
                      "messages_sent": history.get("messages_sent"),
                      "unknown_node_messages": history.get("unknown_node_messages"),
                      "client_epsilon": history.get("client_epsilon")},
        "not_covered": NOT_COVERED,
        "central_dp": _plain(central), "local_dp": _plain(local),
    }))
    files.append(model_card.write(out / "model_card.md", model_card.render(
        recipe="federated", intended_use=INTENDED_USE, dataset=dataset_info, guarantees=guarantees,
        metrics=metrics, ledger=ledger_info,
        model=f"`{settings.model.name}`, the final global model after {s.rounds} rounds of {s.strategy} "
              f"over {population.num_clients} clients",
        mechanism=_mechanism(s, population.num_clients, central, local), not_covered=_not_covered(central, local),
        sbom=sbom, extra_sections=[("Federated setup", _setup_text(s, population, summary))],
    )))
    return files


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
    return FEDERATED_NOT_COVERED + (CENTRAL_NOT_COVERED if central is not None else ()) + (
        LOCAL_NOT_COVERED if local is not None else ())


def _mechanism(s, n_clients: int, central, local) -> dict:
    """What the card says the federated mechanism did: the values the run used."""
    common = {"rounds": s.rounds, "local_epochs": s.local_epochs, "batch_size": s.batch_size,
              "optimizer": s.optimizer, "clients": n_clients}
    if central is not None:
        return {"kind": "federated_central", **common, "lr": s.lr, "noise_multiplier": central.noise_multiplier,
                "clipping_norm": central.clipping_norm, "clipping_side": central.clipping_side,
                "sampling": central.sampling, "sample_rate": central.sample_rate,
                "expected_cohort": s.expected_cohort(n_clients), "denominator": central.denominator,
                "delta": central.delta}
    if local is not None:
        return {"kind": "federated_local", **common, "lr": s.local_dp_lr, "noise_multiplier": local.noise_multiplier,
                "max_grad_norm": local.max_grad_norm, "accountant": local.accountant, "delta": local.delta}
    return {"kind": "none", "what": "the global model"}


def _setup_text(s, population: Population, summary: dict) -> str:
    n = population.num_clients
    sampling = (f"Poisson, rate {s.sample_rate(n):.4g} (expected {s.expected_cohort(n):.4g} of {n} clients)"
                if s.client_sampling == "poisson" else f"fixed cohort of {s.sample_size(n)} of {n} clients")
    sizes = summary["sizes"]
    return "\n".join([
        f"- engine: {s.engine}; strategy: {s.strategy}; rounds: {s.rounds}; client sampling: {sampling}",
        f"- partition: {population.label}, each row's client a keyed function of "
        f"that row; rows per client (local train + eval, public by declaration): min {min(sizes)}, median "
        f"{sorted(sizes)[len(sizes) // 2]}, max {max(sizes)}; {summary['clients_without_training_rows']} client(s) "
        "without training rows",
        f"- local training: {s.local_epochs} epoch(s), batch {s.batch_size}, {s.optimizer} lr {s.lr}",
        "- federated evaluation uses each client's local split; the held-out split is the evaluator's data.",
    ])


def _plain(plan) -> dict | None:
    if plan is None:
        return None
    from dataclasses import asdict

    d = asdict(plan)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()
            if not (isinstance(v, float) and math.isnan(v))}
