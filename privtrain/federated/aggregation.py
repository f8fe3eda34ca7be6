"""What the server does with the clients' replies: DP-FedAvg's noisy release, or a plain weighted mean.

Models travel as ``{name: numpy array}`` (a state dict). An *update* is a client's new weights
minus the global weights it was sent. Only floating-point arrays are aggregated; any other array
(an integer buffer) keeps the global value.

DP-FedAvg (McMahan et al. 2018), see :mod:`privtrain.federated.central` for its accounting::

    global + (sum_i clip(update_i, C) + N(0, sigma^2 C^2 I)) / denominator

with the *fixed* denominator q·N (Poisson) or m (fixed cohort), never the number of replies: the
release's sensitivity to one client is then C whatever the others do, and a round with no
(or a failed) client is released like any other.
"""

from __future__ import annotations

import math

import numpy as np

Arrays = dict[str, np.ndarray]


def floating(arrays: Arrays) -> list[str]:
    """The names of the arrays that are aggregated (floating point), in the model's order."""
    return [k for k, v in arrays.items() if np.issubdtype(v.dtype, np.floating)]


def update_of(reply: Arrays, global_arrays: Arrays) -> Arrays | None:
    """``reply - global`` over the floating arrays, in float64; None for a malformed reply (other
    names or shapes, or a non-finite value), which then contributes nothing."""
    out = {}
    for k in floating(global_arrays):
        if k not in reply or np.shape(reply[k]) != global_arrays[k].shape:
            return None
        u = np.asarray(reply[k], dtype=np.float64) - global_arrays[k].astype(np.float64)
        if not np.all(np.isfinite(u)):
            return None
        out[k] = u
    return out


def l2_norm(update: Arrays) -> float:
    """The L2 norm of the whole update (all arrays flattened together)."""
    return math.sqrt(sum(float(np.sum(np.square(v))) for v in update.values()))


def clip(update: Arrays, clipping_norm: float) -> Arrays:
    """``update`` scaled to L2 norm at most ``clipping_norm`` (unchanged if already within it)."""
    norm = l2_norm(update)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    return {k: v * scale for k, v in update.items()}


def dp_fedavg(
    global_arrays: Arrays,
    updates: list[Arrays],
    *,
    clipping_norm: float,
    noise_multiplier: float,
    denominator: float,
    rng: np.random.Generator,
) -> Arrays:
    """One DP-FedAvg release: the global model plus the noisy sum of clipped updates over a fixed denominator.

    Args:
        global_arrays: the model the clients were sent.
        updates: the accepted clients' updates (:func:`update_of`), possibly none.
        clipping_norm: C, the bound on one client's update.
        noise_multiplier: sigma; the noise std on the sum is sigma * C.
        denominator: q·N or m, fixed before the run.
        rng: a secret generator (:func:`privtrain.privacy.randomness.numpy_generator`); the noise is
            drawn array by array in the model's order.

    Returns:
        The released model, in the global model's dtypes.
    """
    names = floating(global_arrays)
    total = {k: np.zeros(global_arrays[k].shape, dtype=np.float64) for k in names}
    for update in updates:
        for k, v in clip(update, clipping_norm).items():
            total[k] += v
    std = float(noise_multiplier) * float(clipping_norm)
    for k in names:
        total[k] += rng.normal(0.0, std, size=global_arrays[k].shape)
    out = dict(global_arrays)
    for k in names:
        out[k] = (global_arrays[k].astype(np.float64) + total[k] / float(denominator)).astype(global_arrays[k].dtype)
    return out


def weighted_mean(global_arrays: Arrays, replies: list[tuple[Arrays, float]]) -> Arrays:
    """Non-private FedAvg: the replies' floating arrays averaged with their weights (the global model if none)."""
    replies = [(r, w) for r, w in replies if w > 0]
    if not replies:
        return dict(global_arrays)
    total_weight = sum(w for _, w in replies)
    out = dict(global_arrays)
    for k in floating(global_arrays):
        # sum() may return its start 0 for no items; replies is not empty, so wrap its array sum as one
        acc = np.asarray(sum(np.asarray(r[k], dtype=np.float64) * w for r, w in replies)) / total_weight
        out[k] = acc.astype(global_arrays[k].dtype)
    return out


class FedAdam:
    """The server-side Adam step of FedAdam (Reddi et al. 2021), as ``flwr.serverapp.strategy.FedAdam`` does it."""

    def __init__(self, eta: float, beta_1: float, beta_2: float, tau: float) -> None:
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau
        self.m: Arrays = {}
        self.v: Arrays = {}

    def step(self, server_round: int, global_arrays: Arrays, aggregate: Arrays) -> Arrays:
        """The next global model, given the clients' (weighted-mean) aggregate of this round."""
        out = dict(global_arrays)
        eta = self.eta * math.sqrt(1 - self.beta_2 ** (server_round + 1.0)) / (1 - self.beta_1 ** (server_round + 1.0))
        for k in floating(global_arrays):
            delta = aggregate[k].astype(np.float64) - global_arrays[k].astype(np.float64)
            self.m[k] = self.beta_1 * self.m.get(k, 0.0) + (1 - self.beta_1) * delta
            self.v[k] = self.beta_2 * self.v.get(k, 0.0) + (1 - self.beta_2) * delta**2
            out[k] = (global_arrays[k] + eta * self.m[k] / (np.sqrt(self.v[k]) + self.tau)).astype(
                global_arrays[k].dtype
            )
        return out
