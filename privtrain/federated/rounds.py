"""One round on the server: turn the clients' replies into the next global model, and record the round.

:class:`ServerStep` accepts a reply only from the node that first claimed its partition (one
partition, one vote) and only if it is well formed; everything else contributes nothing, which
central DP's sensitivity already covers. :class:`History` evaluates the global model on the held-out
split, tracks epsilon so far from the server's own counts, and writes ``rounds.jsonl``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from privtrain.federated import aggregation as agg


class ServerStep:
    """The server's half of a round for ``job``: DP-FedAvg under central DP, else FedAvg/FedProx/FedAdam."""

    def __init__(self, job) -> None:
        from privtrain.privacy.randomness import numpy_generator

        s = job.settings
        self.job = job
        self.releases = 0
        self.noise = numpy_generator(s.noise_seed, "server-noise") if job.central is not None else None
        self.adam = (
            agg.FedAdam(s.server_lr, s.server_beta_1, s.server_beta_2, s.server_tau)
            if s.strategy == "fedadam" and job.central is None
            else None
        )

    def step(self, server_round: int, arrays: dict, replies: list, counts) -> tuple[dict, dict]:
        """(next global arrays, what happened) from this round's replies.

        Args:
            server_round: 1-based round number.
            arrays: the global model the clients were sent.
            replies: Flower reply messages (errors included).
            counts: the server's :class:`~privtrain.federated.accounting.TrainCounts` (learns partitions).
        """
        accepted, losses = [], []
        failed = rejected = 0
        for msg in replies:
            if msg.has_error():
                failed += 1
                continue
            parsed = _parse(msg, arrays)
            if parsed is None or not counts.learn(int(msg.metadata.src_node_id), parsed[0]):
                rejected += 1
                continue
            k, reply, update, loss = parsed
            accepted.append((k, reply, update))
            if loss is not None:
                losses.append((loss, self.job.train_sizes[k]))
        info = {"replies": len(accepted), "failed": failed, "rejected": rejected}
        c = self.job.central
        if c is not None:
            if self.noise is None:  # made with the central plan in __init__
                raise RuntimeError("a central DP round needs the server's noise generator")
            arrays = agg.dp_fedavg(
                arrays,
                [u for _, _, u in accepted],
                clipping_norm=c.clipping_norm,
                noise_multiplier=c.noise_multiplier,
                denominator=c.denominator,
                rng=self.noise,
            )
            self.releases += 1  # every round is released, whoever replied
            info["releases"] = self.releases
            return arrays, info
        mean = agg.weighted_mean(arrays, [(reply, self.job.weight(k)) for k, reply, _ in accepted])
        if self.adam is not None and any(self.job.weight(k) > 0 for k, _, _ in accepted):
            mean = self.adam.step(server_round, arrays, mean)
        if losses and sum(w for _, w in losses) > 0:  # privacy=none only: the clients send nothing else
            info["nonprivate_train_loss"] = sum(loss * w for loss, w in losses) / sum(w for _, w in losses)
        return mean, info


def _parse(msg, arrays: dict):
    """(partition, reply arrays, update, train loss or None) of a well-formed TRAIN reply, else None."""
    try:
        metrics = msg.content["metrics"]
        k = int(metrics["partition-id"])
        reply = {name: a.numpy() for name, a in msg.content["arrays"].items()}
        loss = float(metrics["train-loss"]) if "train-loss" in metrics else None
    except (KeyError, TypeError, ValueError):
        return None
    update = agg.update_of(reply, arrays)
    if update is None or k < 0:
        return None
    return k, reply, update, loss


class History:
    """Per-round records (held-out accuracy, epsilon so far, what the clients did), and the run's summary."""

    def __init__(self, job, log: Path, counts) -> None:
        self.job, self.log, self.counts = job, log, counts
        self.rounds: list[dict] = []
        self.releases = 0
        self.x_test, self.y_test = job.held_out()
        log.write_text("")

    def record(self, server_round: int, model, arrays: dict, info: dict) -> dict:
        """Evaluate ``arrays`` on the held-out split, add epsilon so far, append to ``rounds.jsonl``."""
        import torch

        from privtrain.federated.task import evaluate

        model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
        held_out = evaluate(model, self.x_test, self.y_test, self.job.shape["n_classes"])
        record = {"round": server_round, "accuracy": held_out["accuracy"], "loss": held_out["loss"], **info}
        self.releases = int(info.get("releases", self.releases))
        void = self.job.void
        if self.job.central is not None:
            record["releases"] = self.releases
            record["epsilon_client"] = math.inf if void else self.job.central.epsilon_after(self.releases)
        if self.job.local is not None:
            record["epsilon_example"] = math.inf if void else self.local_worst()[2]
        self.rounds.append(record)
        with self.log.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def steps(self) -> dict[int, int]:
        """Each partition's optimizer steps, from the TRAIN messages the server sent (not from client reports)."""
        return self.counts.steps(self.job.steps_per_round)

    def local_worst(self) -> tuple[int, int, float]:
        return self.job.local.worst_case(self.steps(), self.counts.unknown_messages())

    def final(self) -> dict:
        steps = self.steps()
        out = {
            "rounds": self.rounds,
            "releases": self.releases,
            "client_steps": steps,
            "messages_sent": sum(self.counts.sent.values()),
            "unknown_node_messages": self.counts.unknown_messages(),
            "client_epsilon": self.job.local.epsilons(steps) if self.job.local is not None else {},
        }
        if self.job.local is not None:
            k, k_steps, eps = self.local_worst()
            out["local_worst"] = {"client": k, "steps": k_steps, "epsilon": eps}
        return out
