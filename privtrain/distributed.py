"""Multi-process DP-SGD under ``torchrun``: one job, one ledger reservation.

``torchrun --nproc_per_node=N privtrain run dp_sgd ...`` starts N processes. Rank 0 runs the whole
run protocol: it plans, has the ledger reserve the budget, then tells the other ranks to go (or why
not); they load the data only after that word, train their share of every Poisson-sampled batch
with Opacus' ``DPDDP`` and ``DistributedDPOptimizer`` (rank 0 alone adds the noise, to the sum of
all ranks' clipped gradients), and write nothing. Rank 0 evaluates, writes the artifacts and
commits. The sampling rate is the global batch over the public training rows, so ε is the one a
single process gets with the same global settings.

Every rank takes every one of the plan's steps: a rank whose share of a batch is empty adds a zero
sum and still joins the all-reduce (:mod:`privtrain.privacy.opacus_parts`), and
:func:`check_in_step` confirms at the end that all ranks counted the same steps, which rank 0 then
commits.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from privtrain.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int
    size: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World | None:
    """This process's place in a torchrun job, or None when it runs alone."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    return World(int(os.environ.get("RANK", "0")), size)


def is_main() -> bool:
    w = world()
    return w is None or w.main


@contextlib.contextmanager
def process_group(device):
    """Join the job's process group (gloo on CPU, NCCL on GPU) for the run; leave it after."""
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def announce(message: tuple | None) -> tuple:
    """Rank 0 sends ``message`` to every rank (the others pass None); each rank returns it. ``("go",)``,
    ``("stop",)`` or ``("refused", text)``."""
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    if box[0] is None:  # rank 0 always sends a message
        raise RuntimeError("rank 0 broadcast no message")
    return box[0]


def wait_for_go() -> None:
    """A rank other than 0: block until rank 0 has reserved the budget; raise rank 0's refusal."""
    message = announce(None)
    if message[0] == "refused":
        raise UserError(message[1])
    if message[0] == "stop":
        raise Stop


def check_in_step(steps: int, device) -> None:
    """Every rank: confirm that all ranks took ``steps`` optimizer steps (a collective call, on the
    training ``device``: NCCL reduces GPU tensors only).

    Raises:
        RuntimeError: the ranks disagree (a bug: the job then stays charged at its reservation).
    """
    import torch
    import torch.distributed as dist

    counts = torch.tensor([steps, -steps], dtype=torch.int64, device=device)
    dist.all_reduce(counts, op=dist.ReduceOp.MAX)
    if int(counts[0]) != steps or int(-counts[1]) != steps:
        raise RuntimeError(
            f"torchrun ranks fell out of step: {int(-counts[1])} to {int(counts[0])} steps; "
            "the job stays charged at its reservation"
        )


class Stop(Exception):
    """Rank 0 stopped before training (a dry run): the other ranks have nothing to do."""
