"""The ServerApp: privtrain's own round loop on Flower's Message API (``Grid.send_and_receive``).

One loop serves every privacy mode and strategy:

- each round draws its participants (:mod:`privtrain.federated.sampling`: Poisson with rate q,
  or a fixed cohort), sends them the global model, and counts every TRAIN message it sent
  (:class:`~privtrain.federated.accounting.TrainCounts`: local DP is charged from these counts,
  never from what clients report);
- under central DP the replies become one DP-FedAvg release (clip, sum, Gaussian noise from a
  secret generator, fixed denominator), every round, even with no or failed clients; otherwise a
  weighted mean (FedAvg/FedProx) or FedAdam's server step;
- the global model is evaluated on the held-out split (the evaluator's data) after each round; the
  clients evaluate it on their local splits every round up to 20 clients, else after the last.

After each round one line goes to ``rounds.jsonl``; at the end ``history.json`` and
``final_model.pt`` go to the job's output directory, which the recipe reads back (in a
deployment the ServerApp runs in another process).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, ConfigRecordValues, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from privtrain.artifacts import checkpoint
from privtrain.federated import residency
from privtrain.federated import rounds as rnd
from privtrain.federated.job import Job
from privtrain.federated.records import scalar


def make_server_app(job: Job, *, progress: bool = True) -> ServerApp:
    """A ServerApp bound to ``job``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, job, progress=progress)

    return app


def run_server(grid: Grid, job: Job, *, progress: bool = True) -> dict:
    """Run every round; returns (and writes) the history.

    Args:
        grid: Flower's Grid (in-memory in simulation, the SuperLink in a deployment).
        job: the planned run.
        progress: show a progress bar with accuracy and epsilon so far.
    """
    import torch
    from tqdm.auto import tqdm

    from privtrain.federated import sampling
    from privtrain.federated.accounting import TrainCounts
    from privtrain.federated.task import build_model

    s = job.settings
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(s.seed)  # public: the initial model
    model = build_model(job.model, job.shape)
    arrays = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    nodes = wait_for_nodes(grid, job.num_clients, s.startup_timeout)
    residency.check_nodes(grid, nodes, s, s.round_timeout, out / residency.REFUSAL)  # metadata only, before any model
    sampler = sampling.for_job(s, job.num_clients)
    server = rnd.ServerStep(job)
    counts = TrainCounts()
    history = rnd.History(job, out / "rounds.jsonl", counts)
    bar = tqdm(total=s.rounds, desc=f"federated {job.dataset.loader}", unit="round", disable=not progress, leave=False)
    history.record(0, model, arrays, {})
    try:
        for server_round in range(1, s.rounds + 1):
            chosen = sampler.sample(nodes)
            counts.record_sent(chosen)  # charged whatever comes back
            replies = _exchange(
                grid, chosen, arrays, _train_config(job, server_round), MessageType.TRAIN, s.round_timeout
            )
            arrays, info = server.step(server_round, arrays, replies, counts)
            info["sampled"] = len(chosen)
            if s.evaluates_in_round(server_round, job.num_clients):
                info.update(_federated_evaluation(grid, nodes, arrays, server_round, s.round_timeout))
            record = history.record(server_round, model, arrays, info)
            bar.update(1)
            bar.set_postfix(**postfix(record))
    finally:
        bar.close()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    checkpoint.save(model.state_dict(), out / "final_model.pt")
    result = history.final()
    (out / "history.json").write_text(json.dumps(result, indent=1))
    return result


def wait_for_nodes(grid: Grid, expected: int, timeout: float) -> list[int]:
    """The connected nodes once ``expected`` have connected, or whoever is there after ``timeout`` seconds.

    Raises:
        RuntimeError: no node connected at all.
    """
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if len(nodes) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not nodes:
        raise RuntimeError(f"no SuperNode connected within {timeout:g} s (fl.deployment.startup_timeout)")
    return nodes


def _train_config(job: Job, server_round: int) -> ConfigRecord:
    s, c = job.settings, job.central
    config: dict[str, ConfigRecordValues] = {
        "server-round": server_round,
        "proximal-mu": float(s.proximal_mu if s.strategy == "fedprox" else 0.0),
    }
    if c is not None and c.clipping_side == "client":
        config["clipping-norm"] = float(c.clipping_norm)  # the client clips; the server re-clips (a no-op if honest)
    return ConfigRecord(config)


def _exchange(
    grid: Grid, nodes: list[int], arrays: dict, config: ConfigRecord, message_type: str, timeout: float
) -> list[Message]:
    """Send the global model to ``nodes`` and collect the replies that arrive within ``timeout``."""
    if not nodes:
        return []
    import numpy as np
    from flwr.app import Array

    content = RecordDict(
        {"arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}), "config": config}
    )
    messages = [Message(content=content, dst_node_id=n, message_type=message_type) for n in nodes]
    return list(grid.send_and_receive(messages, timeout=timeout))


def _federated_evaluation(grid: Grid, nodes: list[int], arrays: dict, server_round: int, timeout: float) -> dict:
    """Every client evaluates the global model on its local split; clients without such rows reply n = 0."""
    replies = _exchange(
        grid, nodes, arrays, ConfigRecord({"server-round": server_round}), MessageType.EVALUATE, timeout
    )
    total = acc = loss = 0.0
    for reply in replies:
        if reply.has_error() or "metrics" not in reply.content.metric_records:
            continue
        m = reply.content.metric_records["metrics"]
        n = float(scalar(m, "n"))
        if n > 0:
            total, acc, loss = total + n, acc + n * float(scalar(m, "accuracy")), loss + n * float(scalar(m, "loss"))
    if not total:
        return {}
    return {"federated_accuracy": acc / total, "federated_loss": loss / total, "federated_eval_rows": int(total)}


def postfix(record: dict) -> dict:
    """The progress bar's fields for one round's record."""
    out = {"acc": f"{record['accuracy']:.3f}"}
    if "epsilon_client" in record:
        out["eps_client"] = _fmt(record["epsilon_client"])
    if "epsilon_example" in record:
        out["eps_example"] = _fmt(record["epsilon_example"])
    return out


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"
