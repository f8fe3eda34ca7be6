"""The ServerApp: a Flower strategy (optionally wrapped for central DP), evaluated after every round.

After each round it evaluates the global model on the held-out split (the
evaluator's data), records the clients' federated evaluation and the epsilon
spent so far, and appends one line to ``rounds.jsonl``. At the end it writes
``history.json`` and ``final_model.pt`` to the job's output directory, which
the recipe reads back (in a deployment the ServerApp runs in another process).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp

from privtrain.federated.job import Job


def make_server_app(job: Job, *, progress: bool = True) -> ServerApp:
    """A ServerApp bound to ``job``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, job, progress=progress)

    return app


class RoundTracker:
    """Collects what clients report each round; its methods are the strategy's metric aggregators."""

    def __init__(self) -> None:
        self.steps: dict[int, int] = {}  # DP-SGD / optimizer steps per client, over all rounds
        self.train: dict = {}
        self.evaluate: dict = {}

    def aggregate_train(self, records: list[RecordDict], key: str) -> MetricRecord:
        losses, weights = [], []
        for record in records:
            m = next(iter(record.metric_records.values()))
            k = int(m["partition-id"])
            self.steps[k] = int(m["dp-steps"])
            if "train-loss" in m:
                losses.append(float(m["train-loss"]))
                weights.append(float(m[key]))
        self.train = {"clients": len(records)}
        if losses:
            self.train["train_loss"] = sum(l * w for l, w in zip(losses, weights)) / sum(weights)
        return MetricRecord(self.train)

    def aggregate_evaluate(self, records: list[RecordDict], key: str) -> MetricRecord:
        total = acc = loss = 0.0
        for record in records:
            m = next(iter(record.metric_records.values()))
            w = float(m[key])
            total += w
            acc += w * float(m["accuracy"])
            loss += w * float(m["loss"])
        self.evaluate = {"federated_accuracy": acc / total, "federated_loss": loss / total} if total else {}
        return MetricRecord(self.evaluate)


def make_strategy(job: Job, tracker: RoundTracker):
    """The base strategy for ``fl.strategy``, wrapped by Flower's fixed-clipping DP wrapper under central DP."""
    from flwr.serverapp import strategy as st

    s = job.settings
    k = job.num_clients
    m = s.sample_size(k)
    common = dict(
        fraction_train=m / k, min_train_nodes=m, min_available_nodes=k, weighted_by_key="weight",
        fraction_evaluate=1.0 if s.federated_evaluation else 0.0, min_evaluate_nodes=k,
        train_metrics_aggr_fn=tracker.aggregate_train, evaluate_metrics_aggr_fn=tracker.aggregate_evaluate,
    )
    if s.strategy == "fedprox":
        base = st.FedProx(**common, proximal_mu=s.proximal_mu)
    elif s.strategy == "fedadam":
        base = st.FedAdam(**common, eta=s.server_lr, eta_l=s.lr, beta_1=s.server_beta_1, beta_2=s.server_beta_2,
                          tau=s.server_tau)
    else:
        base = st.FedAvg(**common)
    c = job.central
    if c is None:
        return base
    from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    # Flower's own accounted mode: no amplification, add-or-remove-one client, equal weights, FedAvg
    # aggregation, and a round is released only if exactly m clients reply. Our ledger events say the same.
    accountant = RdpAccountant(PrivacyConfig(target_delta=c.delta, population_size=k,
                                             neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                             sampling_method=SamplingMethod.NO_AMPLIFICATION))
    wrapper = (st.DifferentialPrivacyServerSideFixedClipping if c.clipping_side == "server"
               else st.DifferentialPrivacyClientSideFixedClipping)
    return wrapper(base, c.noise_multiplier, c.clipping_norm, m, accountant=accountant)


def run_server(grid: Grid, job: Job, *, progress: bool = True) -> dict:
    """Run every round; returns (and writes) the history."""
    import torch
    from tqdm.auto import tqdm

    from privtrain.federated.accounting import gaussian_epsilon
    from privtrain.federated.task import build_model, evaluate

    s = job.settings
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed)
    random.seed(s.seed)  # Flower samples nodes with the random module: reproducible client selection
    model = build_model(job.model, job.shape)
    x_test, y_test = job.held_out()
    tracker = RoundTracker()
    strategy = make_strategy(job, tracker)
    rounds: list[dict] = []
    log = out / "rounds.jsonl"
    log.write_text("")
    bar = tqdm(total=s.rounds, desc=f"federated {job.dataset.loader}", unit="round", disable=not progress,
               leave=False)

    def on_round(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        central = evaluate(model, x_test, y_test, job.shape["n_classes"])
        record = {"round": server_round, "accuracy": central["accuracy"], "loss": central["loss"]}
        if server_round > 0:
            record.update(tracker.train)
            record.update(tracker.evaluate)
        if job.central is not None:
            releases = strategy.accountant.num_releases
            record["releases"] = releases
            record["epsilon_client"] = gaussian_epsilon(job.central.noise_multiplier, releases, job.central.delta)
        if job.local is not None:
            record["epsilon_example"] = job.local.worst(tracker.steps)[1]  # from the steps clients report
        rounds.append(record)
        with log.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if server_round > 0:
            bar.update(1)
            bar.set_postfix(**_postfix(record))
        return MetricRecord({"accuracy": central["accuracy"], "loss": central["loss"]})

    try:
        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=s.rounds,
                       timeout=s.round_timeout, train_config=ConfigRecord(), evaluate_config=ConfigRecord(),
                       evaluate_fn=on_round)
    finally:
        bar.close()
    history = {"rounds": rounds, "client_steps": tracker.steps,
               "client_epsilon": job.local.epsilons(tracker.steps) if job.local is not None else {}}
    if job.central is not None:
        spent = strategy.privacy_spent()
        history["releases"] = strategy.accountant.num_releases
        history["flower_rdp_epsilon"] = spent.epsilon if spent else None
    torch.save(model.state_dict(), out / "final_model.pt")
    (out / "history.json").write_text(json.dumps(history, indent=1))
    return history


def postfix(record: dict) -> dict:
    return _postfix(record)


def _postfix(record: dict) -> dict:
    out = {"acc": f"{record['accuracy']:.3f}"}
    if "epsilon_client" in record:
        out["eps_client"] = _fmt(record["epsilon_client"])
    if "epsilon_example" in record:
        out["eps_example"] = _fmt(record["epsilon_example"])
    return out


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"
