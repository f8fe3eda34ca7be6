"""Randomness that matters is secret: DP noise and privacy-relevant sampling.

A DP guarantee holds only if the attacker cannot predict the noise. ``seed`` is public (it is in
``config.yaml``), so it governs public randomness only: initialisation, the split, partitions and
non-DP synthesizers. The noise and the Poisson sampling of DP-SGD, the clients' noise, the server's
client sampling and noise, and the DP synthesizer's noise draw from generators seeded here from the
operating system's entropy, once per use; the seed is never derived from ``seed`` and never
written anywhere.

``reproducible_noise=true`` (a debugging switch) seeds them from ``seed`` instead. The noise is then
predictable, so the run's guarantee is void: the run reports ε = ∞ and the ledger charges it as
non-private.

Known limits: the generators are PyTorch's Philox/Mersenne and NumPy's PCG64 seeded with 63-128
secret bits, not a CSPRNG (Opacus' ``secure_mode`` with torchcsprng is not used), and floating-point
Gaussian samplers are open to precision attacks (Mironov 2012; Jin et al. 2022). See docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import secrets

VOID_NOTE = (
    "reproducible_noise=true: the DP noise and sampling were derived from the public seed, so anyone "
    "can replay them; the guarantee is void (epsilon = infinity) and the ledger charged it as non-private"
)


def secret_seed(reproducible_from: int | None = None, purpose: str = "noise") -> int:
    """A 63-bit seed from the OS's entropy; from ``reproducible_from`` only in the debugging mode."""
    if reproducible_from is None:
        return secrets.randbits(63)
    digest = hashlib.sha256(f"privtrain/reproducible/{purpose}/{reproducible_from}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def torch_generator(reproducible_from: int | None = None, purpose: str = "noise", device=None):
    """A ``torch.Generator`` for DP noise or Poisson sampling (on ``device``: the noise's, for a GPU)."""
    import torch

    return torch.Generator(device=device or "cpu").manual_seed(secret_seed(reproducible_from, purpose))


def numpy_generator(reproducible_from: int | None = None, purpose: str = "noise"):
    """A NumPy ``Generator`` (PCG64) for DP noise or client sampling."""
    import numpy as np

    if reproducible_from is None:
        return np.random.default_rng(secrets.randbits(128))
    return np.random.default_rng(secret_seed(reproducible_from, purpose))
