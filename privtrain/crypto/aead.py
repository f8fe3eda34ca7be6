"""The sealed-file format: AES-256-GCM (``cryptography``'s AEAD), in chunks, with the header as associated data.

Layout (all integers big-endian)::

    magic   b"PTSEAL"          6 bytes
    version 1                  1 byte
    algo    1 = AES-256-GCM    1 byte
    key id  length + UTF-8     1 + n bytes (which key of a keyring sealed the file)
    context length + UTF-8     2 + m bytes (what the file is: "run <id>/checkpoint.pt", ...)
    prefix  random             7 bytes
    chunks  AES-GCM(plaintext[i*1 MiB : (i+1)*1 MiB]) each with its 16-byte tag

Chunk i is sealed with the nonce ``prefix || i (4 bytes) || last (1 byte)`` and the whole header as
associated data (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár 2015): a changed
byte anywhere, a reordered, dropped or appended chunk, a header naming another key or context, all
fail authentication. Chunks keep memory bounded and stay far below GCM's per-message limit; a 56-bit
random prefix per file keeps nonces unique across files sealed with one key (a collision is expected
only after about 2^28 files).

The context names the file's role. A reader that knows what it expects (the run beside the file, the
file's name) compares it, so a sealed file swapped in for another (another run's checkpoint, the
synthetic rows in place of the checkpoint) is refused even though it authenticates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from privtrain.errors import UserError

MAGIC = b"PTSEAL"
VERSION = 1
ALGORITHMS = {1: "AES-256-GCM"}
ALGORITHM = "AES-256-GCM"
CHUNK = 1 << 20
_TAG = 16
_PREFIX = 7


@dataclass(frozen=True)
class Header:
    """What a sealed file says about itself (authenticated, not secret).

    Attributes:
        key_id: the id of the key that sealed it.
        context: the role it was sealed for.
        algorithm: the AEAD's name.
        raw: the header bytes (the associated data).
    """

    key_id: str
    context: str
    algorithm: str
    raw: bytes


def is_sealed(blob: bytes) -> bool:
    """Does ``blob`` (or its first bytes) start as a sealed file?"""
    return blob[: len(MAGIC)] == MAGIC


def seal(plaintext: bytes, key: bytes, key_id: str, context: str) -> bytes:
    """Encrypt and authenticate ``plaintext`` under ``key``.

    Args:
        plaintext: the file's bytes.
        key: 32 bytes.
        key_id: recorded in the header (1-255 UTF-8 bytes).
        context: the file's role, recorded in the header and authenticated (up to 65535 bytes).

    Returns:
        the sealed bytes.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kid, ctx = key_id.encode(), context.encode()
    if not 0 < len(kid) < 256 or len(ctx) >= 1 << 16:
        raise ValueError("key id must be 1-255 bytes and the context under 64 KiB")
    prefix = os.urandom(_PREFIX)
    header = MAGIC + bytes([VERSION, 1, len(kid)]) + kid + len(ctx).to_bytes(2, "big") + ctx + prefix
    aead = AESGCM(key)
    n = max(1, -(-len(plaintext) // CHUNK))  # an empty file is one empty chunk (its tag still authenticates)
    view = memoryview(plaintext)
    parts = [header]
    for i in range(n):
        parts.append(aead.encrypt(_nonce(prefix, i, i == n - 1), view[i * CHUNK : (i + 1) * CHUNK], header))
    return b"".join(parts)


def read_header(blob: bytes, where: str) -> Header | None:
    """The header of a sealed file; None when ``blob`` is not sealed (no magic).

    Raises:
        UserError: it starts like a sealed file but its header is cut short or of an unknown version.
    """
    if not is_sealed(blob):
        return None
    try:
        at = len(MAGIC)
        version, algo, n = blob[at], blob[at + 1], blob[at + 2]
        at += 3
        kid = blob[at : at + n].decode()
        at += n
        m = int.from_bytes(blob[at : at + 2], "big")
        ctx = blob[at + 2 : at + 2 + m].decode()
        at += 2 + m + _PREFIX
        if version != VERSION or algo not in ALGORITHMS or len(blob) < at + _TAG or len(kid) == 0:
            raise ValueError
    except (IndexError, ValueError, UnicodeDecodeError):
        raise UserError(
            f"{where} is not a sealed file this privtrain can read (its header is damaged or of "
            "another version); restore it from the run as written."
        ) from None
    return Header(kid, ctx, ALGORITHMS[algo], bytes(blob[:at]))


def unseal(blob: bytes, header: Header, key: bytes, where: str) -> bytes:
    """Decrypt a sealed file whose header was read by :func:`read_header`.

    Raises:
        UserError: authentication failed (one line: the file was altered, or the key is not the one
            that sealed it).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, raw = AESGCM(key), header.raw
    prefix = raw[-_PREFIX:]
    body = memoryview(blob)[len(raw) :]
    size = CHUNK + _TAG
    n = max(1, -(-len(body) // size))
    out = []
    try:
        for i in range(n):
            out.append(aead.decrypt(_nonce(prefix, i, i == n - 1), body[i * size : (i + 1) * size], raw))
    except InvalidTag:
        raise UserError(
            f"{where} fails authentication under key id {header.key_id!r}: either the file was altered "
            f"after it was written, or the key configured under that id is not the one that encrypted it; "
            "use the right key, or restore the file as the run wrote it."
        ) from None
    return b"".join(out)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
