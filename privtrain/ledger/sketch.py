"""Noisy bit arrays: what the ledger stores of a table's rows, and why no row can be read back from them.

For each column group g of a registered table, every row's code tuple (see :mod:`privtrain.ledger.columns`)
is hashed with a keyed SipHash-2-4 (the row key's ``sketch`` subkey, salted with the table's fingerprint
and the group) to one of ``m_g`` bit positions, and that bit is set. Then **every** bit of the array is
flipped independently with probability ``p = 1 / (1 + e^eps_b)`` (randomized response), drawn from the
operating system's entropy and never recorded. Only the flipped array is stored.

**The bound (eps_s).** Adding or removing one row changes at most one true bit per group, so at most ``G``
bits in all. For any stored array ``r`` and true arrays ``b``, ``b'`` that differ in those bits,
``P(r | b) / P(r | b') = prod over differing bits of ((1-p)/p)^(+-1) <= e^(G * eps_b)``. With
``eps_b = EPS_S / G``, one row's presence changes the likelihood of everything stored in the sketch by at
most ``e^EPS_S``, whatever else an observer knows: every other row, every key, the code of the row itself.
An observer who tests a row it already holds (the strongest membership test there is) moves from prior
odds ``o`` to posterior odds at most ``o * e^EPS_S``: from even odds to at most e^2 / (1 + e^2) = 88%.
Enumerating every value of every column therefore recovers no row with confidence above that, and no
cell value (a cell is only ever hashed inside its row's code tuple, with the other columns of its group).

A registered table gets one sketch; a person whose rows are registered in k tables is protected at
``k * EPS_S`` (the ledger registers a table only when it brings rows it does not already hold).

**Estimating overlap.** A foreign row's probe lands on a uniformly random position, which reads 1 with
probability ``o`` (the array's observed share of ones); a member's probe lands on its own set bit, which
reads 1 with probability ``1 - p``. Averaged over hundreds of rows this separates shares of members to a
few percent (see :func:`privtrain.ledger.overlap.compare`).
"""

from __future__ import annotations

import hashlib
import math
import secrets

import numpy as np
import pandas as pd

EPS_S = 2.0           # the bound above, for one registered table
BITS_PER_CODE = 4     # array size per distinct code: about a fifth of true bits are set


def flip_probability(eps_bit: float) -> float:
    """Randomized response: a bit is reported flipped with probability 1 / (1 + e^eps_bit)."""
    return 0.0 if math.isinf(eps_bit) else 1.0 / (1.0 + math.exp(eps_bit))


def size_for(distinct: int) -> int:
    """Bits for a group with ``distinct`` code tuples: a power of two, at least 1,024."""
    return 1 << max(10, math.ceil(math.log2(max(distinct, 1) * BITS_PER_CODE)))


def positions(codes: np.ndarray, key: str, m: int) -> np.ndarray:
    """Bit positions of code tuples (an n x k int64 array) under the 16-character SipHash ``key``."""
    codes = np.ascontiguousarray(codes, dtype="<i8")
    if codes.ndim == 1:
        codes = codes[:, None]
    rows = codes.view(f"S{8 * codes.shape[1]}").ravel().astype(object)  # fixed-length: stays injective
    return (pd.util.hash_array(rows, hash_key=key, categorize=True) % np.uint64(m)).astype(np.int64)


def build(bit_positions: np.ndarray, m: int, flip: float, rng=None) -> np.ndarray:
    """The stored array: true bits set at ``bit_positions``, then each bit flipped with probability ``flip``."""
    bits = np.zeros(m, dtype=bool)
    bits[bit_positions] = True
    if flip > 0:
        rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        bits ^= rng.random(m) < flip
    return bits


def pack(arrays: list[np.ndarray]) -> bytes:
    return b"".join(np.packbits(a).tobytes() for a in arrays)


def unpack(blob: bytes, sizes: list[int]) -> list[np.ndarray]:
    out, at = [], 0
    for m in sizes:
        nbytes = (m + 7) // 8
        out.append(np.unpackbits(np.frombuffer(blob[at:at + nbytes], dtype=np.uint8))[:m].astype(bool))
        at += nbytes
    if at != len(blob):
        raise ValueError("a stored sketch does not match its layout")
    return out


def digest(layout_json: str, blob: bytes) -> str:
    """SHA-256 over a sketch's layout and bits: what a ``rows`` entry chains."""
    h = hashlib.sha256(b"privtrain-sketch/v1\n")
    h.update(layout_json.encode())
    h.update(b"\n")
    h.update(blob)
    return h.hexdigest()
