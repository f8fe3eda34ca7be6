"""Wall time of a 10-client, 5-round federated run through privtrain vs a minimal hand-written Flower app.

Both do the same work: non-private FedAvg on digits (logistic regression, SGD lr 0.5, 2 local epochs,
batch 32, every client trains and evaluates every round, held-out evaluation after every round), with
`flwr.simulation.run_simulation` and the same Ray resources. privtrain adds: loading and
fingerprinting the population, the ledger's plan/reserve/commit, plots, metrics and the model card.

    python benchmarks/federated_overhead.py            # prints both times and the ratio
    python benchmarks/federated_overhead.py --repeats 3

Runs alternate (hand-written, privtrain, ...) so drifting machine load hits both alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

CLIENTS, ROUNDS, LOCAL_EPOCHS, BATCH, LR = 10, 5, 2, 32, 0.5
NUM_CPUS, CPUS_PER_CLIENT = 2, 0.5


def hand_written(tmp: Path) -> float:
    """The minimal Flower app (Message API), written as the Flower quickstart would."""
    import numpy as np
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    start = time.perf_counter()
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(y_tr)), CLIENTS)

    def net():
        return torch.nn.Linear(64, 10)

    def client_rows(k):
        p = parts[k]
        n_eval = max(1, round(0.2 * len(p)))
        return p[n_eval:], p[:n_eval]

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        tr, _ = client_rows(int(context.node_config["partition-id"]))
        model = net()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        data = torch.utils.data.TensorDataset(torch.from_numpy(x_tr[tr]), torch.from_numpy(y_tr[tr]))
        for _ in range(LOCAL_EPOCHS):
            for xb, yb in torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
        content = RecordDict(
            {"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord({"num-examples": len(tr)})}
        )
        return Message(content=content, reply_to=msg)

    @client.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        _, ev = client_rows(int(context.node_config["partition-id"]))
        model = net()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        with torch.no_grad():
            acc = float((model(torch.from_numpy(x_tr[ev])).argmax(1) == torch.from_numpy(y_tr[ev])).float().mean())
        return Message(
            content=RecordDict({"metrics": MetricRecord({"accuracy": acc, "num-examples": len(ev)})}), reply_to=msg
        )

    server = ServerApp()
    final = {}

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        model = net()

        def central(server_round, arrays):
            model.load_state_dict(arrays.to_torch_state_dict())
            with torch.no_grad():
                acc = float((model(torch.from_numpy(x_te)).argmax(1) == torch.from_numpy(y_te)).float().mean())
            final["accuracy"] = acc
            return MetricRecord({"accuracy": acc})

        FedAvg(
            fraction_train=1.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS, min_evaluate_nodes=CLIENTS
        ).start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=ROUNDS,
            train_config=ConfigRecord(),
            evaluate_fn=central,
        )

    backend = {
        "client_resources": {"num_cpus": CPUS_PER_CLIENT, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": NUM_CPUS,
            "num_gpus": 0,
            "_temp_dir": str(tmp),
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
    }
    logging.getLogger("flwr").setLevel(logging.ERROR)
    run_simulation(server_app=server, client_app=client, num_supernodes=CLIENTS, backend_config=backend)
    import ray

    ray.shutdown()
    seconds = time.perf_counter() - start
    print(f"  hand-written Flower app: {seconds:6.1f} s   accuracy {final['accuracy']:.3f}", flush=True)
    return seconds


def through_privtrain(tmp: Path) -> float:
    import privtrain

    start = time.perf_counter()
    result = privtrain.run(
        "federated",
        [
            "privacy=none",
            f"fl.num_clients={CLIENTS}",
            f"fl.rounds={ROUNDS}",
            f"fl.local_epochs={LOCAL_EPOCHS}",
            f"fl.batch_size={BATCH}",
            f"fl.lr={LR}",
            "fl.optimizer=sgd",
            "recipe.progress=false",
            f"fl.simulation.num_cpus={NUM_CPUS}",
            f"fl.simulation.cpus_per_client={CPUS_PER_CLIENT}",
            f"ledger.path={tmp / 'ledger.db'}",
        ],
        output_dir=tmp / "run",
    )
    seconds = time.perf_counter() - start
    print(f"  privtrain run federated: {seconds:6.1f} s   accuracy {result.metrics['accuracy']:.3f}", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    hand, ours = [], []
    for i in range(args.repeats):
        print(f"repeat {i + 1}/{args.repeats}", flush=True)
        for fn, times in ((hand_written, hand), (through_privtrain, ours)):
            tmp = Path(tempfile.mkdtemp(prefix="ptfl-b-", dir="/tmp"))
            try:
                times.append(fn(tmp))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    h, p = statistics.median(hand), statistics.median(ours)
    print(
        f"median wall time: hand-written {h:.1f} s, privtrain {p:.1f} s; ratio {p / h:.3f} "
        f"(privtrain adds {100 * (p / h - 1):+.1f}%)"
    )


if __name__ == "__main__":
    main()
