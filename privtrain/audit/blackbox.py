"""Black-box one-run audit: input-space canaries, scored on the final model only.

Canaries are public rows given a wrong label (a label other than their own, uniformly): the examples a
model can only fit by memorising them. Each is included with probability 1/2 among the plan's
``rows`` training rows (public rows fill the rest, so the loader sees as many rows as planned). After
training, a canary's score is the released model's log-probability of its canary label (higher means
"included"). Only the final model is seen, as an outside attacker would see it, so the bound is the
counting bound of Steinke et al. (a proof for any mechanism) beside the Gaussian estimate.
"""

from __future__ import annotations

import numpy as np
import torch

from privtrain.audit import one_run_data as data


class StepHook:
    """An instrument that only counts steps (for the progress bar), after the accountant's hook."""

    def __init__(self, on_step=None) -> None:
        self.on_step = on_step

    def __call__(self, model, optimizer, loader, *, steps: int, rows: int) -> None:
        previous = optimizer.step_hook

        def count(opt) -> None:
            if previous is not None:
                previous(opt)
            if self.on_step is not None:
                self.on_step()

        optimizer.attach_step_hook(count)


def canaries(job, m: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """m public rows, each with a label that is not its own."""
    x, y = data.public_rows(job, m, rng)
    shift = rng.integers(1, job.n_classes, size=m)
    return x, (y + shift) % job.n_classes


def run(job, included: np.ndarray, rng, *, on_step=None) -> np.ndarray:
    """Train with the included canaries; return every canary's score on the final model (length m)."""
    xc, yc = canaries(job, len(included), rng)
    chosen = np.flatnonzero(included)
    x_pub, y_pub = data.public_rows(job, job.rows - len(chosen), rng)
    x = np.concatenate([x_pub, xc[chosen]])
    y = np.concatenate([y_pub, yc[chosen]])
    outcome = data.train(job, data.build_model(job), x, y, StepHook(on_step))
    model = outcome.model.eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.from_numpy(xc)).float(), dim=1)
    return logp[torch.arange(len(yc)), torch.from_numpy(yc)].numpy().astype(np.float64)
