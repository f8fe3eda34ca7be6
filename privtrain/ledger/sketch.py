"""Noisy bit arrays: what the ledger stores of a table's rows, and why no row can be read back from them.

For each column group g of a registered table, every row's code tuple (see :mod:`privtrain.ledger.columns`)
is hashed with a keyed SipHash-2-4 (a subkey of the row key for this table's random salt and this group)
to one of ``m_g`` bit positions, and that bit is set. Then **every** bit of the array is
flipped independently with probability ``p = 1 / (1 + e^eps_b)`` (randomized response), drawn from the
operating system's entropy and never recorded. Only the flipped array is stored.

**The bound (eps_s).** Adding or removing one row changes at most one true bit per group, so at most ``G``
bits in all. For any stored array ``r`` and true arrays ``b``, ``b'`` that differ in those bits,
``P(r | b) / P(r | b') = prod over differing bits of ((1-p)/p)^(+-1) <= e^(G * eps_b)``. With
``eps_b = EPS_S / G``, one row's presence changes the likelihood of everything stored in the sketch by at
most ``e^EPS_S``, whatever else an observer knows: every other row, every key, the code of the row itself.
An observer who tests a row it already holds (the strongest membership test there is) moves from prior
odds ``o`` to posterior odds at most ``o * e^EPS_S``: from even odds to at most e^2 / (1 + e^2) = 88%.
Enumerating every value of every column therefore recovers no row with confidence above that. A cell is
only ever hashed inside its row's code tuple: guessing one hidden cell of a row known otherwise, two
candidate values differ in at most 2k bits (k: the groups holding its column, k * eps_b <= EPS_S), so their
odds move by at most e^(2 k eps_b). tests/test_ledger_inversion.py measures both attacks.

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

EPS_S = 2.0  # the bound above, for one registered table
BITS_PER_CODE = 4  # array size per distinct code: about a fifth of true bits are set


def flip_probability(eps_bit: float) -> float:
    """Randomized response: a bit is reported flipped with probability 1 / (1 + e^eps_bit)."""
    return 0.0 if math.isinf(eps_bit) else 1.0 / (1.0 + math.exp(eps_bit))


def size_for(distinct: int) -> int:
    """Bits for a group with ``distinct`` code tuples: a power of two, at least 1,024."""
    return 1 << max(10, math.ceil(math.log2(max(distinct, 1) * BITS_PER_CODE)))


_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _rotl(x: np.ndarray, b: int) -> np.ndarray:
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


def _round(v0, v1, v2, v3):
    v0 = v0 + v1
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = v2 + v3
    v3 = _rotl(v3, 16) ^ v2
    v0 = v0 + v3
    v3 = _rotl(v3, 21) ^ v0
    v2 = v2 + v1
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash(words: np.ndarray, key: bytes) -> np.ndarray:
    """SipHash-2-4 of each row of ``words`` (n x k uint64, read as 8k little-endian bytes) under a 16-byte key,
    vectorised over the rows (the same function as the reference implementation)."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    k0, k1 = (np.uint64(int.from_bytes(key[i : i + 8], "little")) for i in (0, 8))
    n = len(words)
    v0 = np.full(n, k0 ^ np.uint64(0x736F6D6570736575))
    v1 = np.full(n, k1 ^ np.uint64(0x646F72616E646F6D))
    v2 = np.full(n, k0 ^ np.uint64(0x6C7967656E657261))
    v3 = np.full(n, k1 ^ np.uint64(0x7465646279746573))
    with np.errstate(over="ignore"):
        for c in range(words.shape[1]):
            m = words[:, c]
            v3 = v3 ^ m
            v0, v1, v2, v3 = _round(*_round(v0, v1, v2, v3))
            v0 = v0 ^ m
        b = np.uint64(((8 * words.shape[1]) & 0xFF) << 56)
        v3 = v3 ^ b
        v0, v1, v2, v3 = _round(*_round(v0, v1, v2, v3))
        v0 = v0 ^ b
        v2 = v2 ^ np.uint64(0xFF)
        for _ in range(4):
            v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def positions(codes: np.ndarray, key: bytes, m: int) -> np.ndarray:
    """Bit positions of code tuples (an n x k int64 array) under the 16-byte SipHash ``key``."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim == 1:
        codes = codes[:, None]
    return (siphash(codes.view(np.uint64), key) % np.uint64(m)).astype(np.int64)


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
        out.append(np.unpackbits(np.frombuffer(blob[at : at + nbytes], dtype=np.uint8))[:m].astype(bool))
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
