"""Example-level accounting of local DP-SGD, from what the server itself knows.

Local DP (unit ``example``). Each client runs DP-SGD with Opacus (Poisson sampling at rate
``batch / N``, ``local_epochs * ceil(N / batch)`` steps per round, divisor ``batch``) and keeps its
accountant across rounds. ``N`` is the client's **public** size (the dataset's public size shared
over the clients, :func:`privtrain.federated.planning.client_rows`), never the rows it holds: one
row more or less at a client would otherwise change its mechanism. Partitions are disjoint, so an
example's loss is its own client's: the population's epsilon is the maximum over clients.

The server never takes a client's word for how much it trained. It counts the TRAIN messages it
sent to each node (:class:`TrainCounts`), learns which partition a node serves from the node's
first reply, and charges each partition (messages sent) x (its steps per round): a round whose
aggregate is dropped, or a reply that never arrives, is still charged, because the client may have
trained. A node whose partition is unknown (it never replied, or its claims contradict each other)
is charged as the worst case over partitions.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from privtrain.errors import UserError


@dataclass(frozen=True)
class LocalPlan:
    """Local DP-SGD in every client, as planned: one noise multiplier for all clients."""

    noise_multiplier: float
    max_grad_norm: float
    accountant: str
    delta: float
    batch_size: int
    local_epochs: int
    rounds: int
    sizes: tuple[int, ...]  # each client's public training rows (not the rows it holds): fix q and steps
    epsilon: float  # planned: the largest client's epsilon if it trains in every round

    def batches(self, k: int) -> int:
        return math.ceil(self.sizes[k] / self.batch_size)

    def sample_rate(self, k: int) -> float:
        """``batch / N``: the expected batch among client ``k``'s N public rows (every row, if N <= batch)."""
        return min(1.0, self.batch_size / max(1, self.sizes[k]))

    def steps_per_round(self, k: int) -> int:
        """DP-SGD steps of one round of client ``k`` (also when it holds no row: zero sums, full noise)."""
        return self.batches(k) * self.local_epochs

    def client_dp(self, k: int):
        """What :func:`privtrain.training.train` needs for one round of client ``k`` (a ``DpSgdPlan``)."""
        from privtrain.privacy import dp_sgd as dp_plan

        return dp_plan.DpSgdPlan(
            self.noise_multiplier,
            self.sample_rate(k),
            self.steps_per_round(k),
            self.delta,
            self.max_grad_norm,
            self.accountant,
            math.nan,
        )

    def client_epsilon(self, k: int, steps: int) -> float:
        return _epsilon_of(self.noise_multiplier, self.sample_rate(k), steps, self.delta, self.accountant)

    def client_event(self, k: int, steps: int):
        from privtrain.privacy.events import dp_sgd_event

        return dp_sgd_event(sample_rate=self.sample_rate(k), noise_multiplier=self.noise_multiplier, steps=steps)

    def epsilons(self, steps: dict[int, int]) -> dict[int, float]:
        """Each client's epsilon, given its total steps (clients of equal size share one accountant call)."""
        return {k: self.client_epsilon(k, s) for k, s in steps.items() if s > 0}

    def worst(self, steps: dict[int, int]) -> tuple[int, float]:
        """(client, epsilon) of the client with the largest epsilon, given each client's total steps."""
        eps = self.epsilons(steps)
        if not eps:
            return -1, 0.0
        k = max(eps, key=eps.__getitem__)
        return k, eps[k]

    def worst_case(self, steps: dict[int, int], unknown_messages: int) -> tuple[int, int, float]:
        """(client, its steps, epsilon) of the largest epsilon, when ``unknown_messages`` TRAIN messages
        went to nodes whose partition is unknown: they may all have been any one partition's."""
        if unknown_messages <= 0:
            k, eps = self.worst(steps)
            return k, steps.get(k, 0), eps
        candidates = {k: steps.get(k, 0) + unknown_messages * self.steps_per_round(k) for k in range(len(self.sizes))}
        k, eps = self.worst(candidates)
        return k, candidates.get(k, 0), eps

    @property
    def planned_steps(self) -> dict[int, int]:
        return {k: self.steps_per_round(k) * self.rounds for k in range(len(self.sizes)) if self.sizes[k] > 0}

    @property
    def events(self) -> tuple:
        k, _ = self.worst(self.planned_steps)
        return (self.client_event(k, self.planned_steps[k]),)


def plan_local(
    *,
    sizes: Sequence[int],
    batch_size: int,
    local_epochs: int,
    rounds: int,
    target_epsilon: float | None,
    noise_multiplier: float | None,
    delta: float | None,
    max_grad_norm: float | None,
    accountant: str,
    field: str = "privacy",
) -> LocalPlan:
    """Plan local DP-SGD so that no client exceeds ``target_epsilon`` even if it trains every round.

    Raises:
        UserError: a field is out of range.
    """
    from privtrain.privacy import dp_sgd as dp_plan

    if accountant not in dp_plan.ACCOUNTANTS:
        raise UserError(
            f"{field}.accountant={accountant!r} is unknown; choose one of {', '.join(dp_plan.ACCOUNTANTS)}."
        )
    if max_grad_norm is None or not max_grad_norm > 0:
        raise UserError(f"{field}.max_grad_norm={max_grad_norm} must be > 0.")
    delta = dp_plan.resolve_delta(delta, sum(sizes))
    if (target_epsilon is None) == (noise_multiplier is None):
        raise UserError(f"{field}: set exactly one of {field}.target_epsilon and {field}.noise_multiplier.")
    sizes = tuple(int(s) for s in sizes)
    draft = LocalPlan(1.0, float(max_grad_norm), accountant, delta, batch_size, local_epochs, rounds, sizes, math.nan)
    shapes = {(draft.sample_rate(k), steps) for k, steps in draft.planned_steps.items()}
    if target_epsilon is not None:
        if not target_epsilon > 0:
            raise UserError(f"{field}.target_epsilon={target_epsilon} must be > 0; use e.g. {field}.target_epsilon=3.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma = max(dp_plan.calibrate(float(target_epsilon), delta, q, steps, accountant) for q, steps in shapes)
    elif noise_multiplier is not None:
        if not noise_multiplier > 0:
            raise UserError(f"{field}.noise_multiplier={noise_multiplier} must be > 0.")
        sigma = float(noise_multiplier)
    else:  # unreachable: exactly one of the two is set (refused above); narrows noise_multiplier
        raise AssertionError("neither target_epsilon nor noise_multiplier is set")
    plan = LocalPlan(sigma, float(max_grad_norm), accountant, delta, batch_size, local_epochs, rounds, sizes, math.nan)
    _, eps = plan.worst(plan.planned_steps)
    return LocalPlan(sigma, float(max_grad_norm), accountant, delta, batch_size, local_epochs, rounds, sizes, eps)


@dataclass
class TrainCounts:
    """What the server knows about local training: TRAIN messages it sent, and which partition each node serves."""

    sent: dict[int, int] = field(default_factory=dict)  # node -> TRAIN messages sent to it
    partition_of: dict[int, int] = field(default_factory=dict)  # node -> partition, from its first reply
    owner: dict[int, int] = field(default_factory=dict)  # partition -> the first node that claimed it
    inconsistent: set[int] = field(default_factory=set)  # nodes whose claims contradict each other

    def record_sent(self, nodes) -> None:
        for node in nodes:
            self.sent[node] = self.sent.get(node, 0) + 1

    def learn(self, node: int, partition: int) -> bool:
        """Record that ``node`` says it serves ``partition``; True if its update may be aggregated:
        a consistent claim by the first node to claim that partition (one partition, one vote)."""
        known = self.partition_of.setdefault(node, partition)
        if known != partition:
            self.inconsistent.add(node)  # it may have trained on anything: charged as the worst case
        self.owner.setdefault(partition, node)
        return node not in self.inconsistent and self.owner[partition] == node

    def steps(self, steps_per_round) -> dict[int, int]:
        """Steps per partition: (messages sent to its nodes) x ``steps_per_round(partition)``."""
        out: dict[int, int] = {}
        for node, n in self.sent.items():
            k = self.partition_of.get(node)
            if k is not None and node not in self.inconsistent:
                out[k] = out.get(k, 0) + n * steps_per_round(k)
        return out

    def unknown_messages(self) -> int:
        """TRAIN messages sent to nodes whose partition the server does not know."""
        return sum(n for node, n in self.sent.items() if node not in self.partition_of or node in self.inconsistent)


@functools.lru_cache(maxsize=4096)
def _epsilon_of(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """One accountant call per distinct (sigma, q, steps, delta): the server asks every round for every client."""
    from privtrain.privacy import dp_sgd as dp_plan

    return dp_plan.epsilon_of(noise_multiplier, sample_rate, steps, delta, accountant)
