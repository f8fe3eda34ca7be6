"""Is the ledger what its writers wrote? The hash chain, its signature, and anchors outside the file.

- **The chain.** Row ``i`` stores ``prev_hash`` and ``hash = sha256(prev_hash + canonical row)``: an
  edited, deleted, inserted or reordered row breaks it at that row; ``meta`` remembers the head.
- **The signature.** With ``PRIVTRAIN_LEDGER_KEY`` set, every entry carries an HMAC of its hash. A MAC
  on entry N authenticates entries 1..N through the chain, so a whole-chain rewrite without the key is
  detected. Entries written before the key was first used are covered by the first signed entry.
- **Anchors outside the file.** The chain and ``meta`` both live inside the file, so whoever can write it
  can rewrite the tail with ``meta``, restore an older backup, or start afresh. Two checks see that:
  ``privtrain ledger head`` prints (count, hash) to publish elsewhere and ``verify --head`` proves the
  ledger still extends it; and every write also updates an anchor in the user's data folder, so this
  machine notices a ledger that lost entries it has seen.
- **Admission checks the tail.** Before every reservation the chain must verify. An open ledger handle walks
  the whole chain once (:func:`verify_tail`); its later checks walk only the entries appended since, re-hash
  the last entry it verified and re-check the head record, the signatures and the anchor. A full
  ``privtrain ledger verify`` always walks everything (and, on SQLite, checks every page of the file).
- **Accepted damage.** A damaged ledger admits no run until it is restored, or until someone records,
  as a chained (and, with a key, signed) ``accepted`` entry, that they accept the damage (with a reason).
  The entry holds a digest of every row before it, so any later change to that prefix is still detected.
  Accepting never lowers what the ledger counts as spent (:mod:`privtrain.ledger.damage`): every state
  that verifies is also recorded as this machine's spend floor (:mod:`privtrain.ledger.floors`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import weakref
from pathlib import Path

from privtrain.ledger import backends, floors, store
from privtrain.ledger.model import VerifyReport

KEY_ENV = "PRIVTRAIN_LEDGER_KEY"


def ledger_key() -> bytes | None:
    text = os.environ.get(KEY_ENV)
    return text.encode() if text else None


def signer(key: bytes | None):
    """``sign(hash) -> hex MAC`` for :func:`privtrain.ledger.store.append`, or None without a key."""
    if key is None:
        return None
    return lambda entry_hash: hmac.new(key, entry_hash.encode(), hashlib.sha256).hexdigest()


def prefix_digest(rows: list[dict]) -> str:
    """A digest of rows as they are stored now (content and hashes), for an ``accepted`` entry."""
    digest = hashlib.sha256()
    for r in rows:
        digest.update(store.canonical(r).encode() + r["hash"].encode())
    return digest.hexdigest()


def check_chain(rows: list[dict], head: tuple[int, str | None]) -> VerifyReport:
    """Walk the chain; damage before the last ``accepted`` entry is checked against what was accepted."""
    start, accepted = 0, None
    for i, r in enumerate(rows):
        if r["status"] == "accepted":
            start, accepted = i, r
    if accepted is not None:
        detail = json.loads(accepted["detail"])
        if detail.get("entries") != start or prefix_digest(rows[:start]) != detail.get("prefix_digest"):
            return VerifyReport(
                False,
                len(rows),
                None,
                f"the {start} entries before the accepted damage (entry "
                f"{accepted['id']}) changed after it was accepted",
            )
    prev = rows[start - 1]["hash"] if start else store.GENESIS
    expected_id = rows[start]["id"] if start else 1
    for r in rows[start:]:
        where = f"entry {r['id']} ({r['status']}, run {r['run_id']}, {r['time']})"
        if r["id"] != expected_id:
            return VerifyReport(
                False,
                len(rows),
                expected_id,
                f"entry {expected_id} is missing (next row has id {r['id']}): deleted or moved",
            )
        if r["prev_hash"] != prev:
            return VerifyReport(
                False,
                len(rows),
                r["id"],
                f"{where} does not follow entry {r['id'] - 1}: an entry was deleted, inserted or reordered here",
            )
        if store.entry_hash(r) != r["hash"]:
            return VerifyReport(False, len(rows), r["id"], f"{where} does not match its hash: its content was edited")
        prev, expected_id = r["hash"], expected_id + 1
    head_id, head_hash = head
    last_id = rows[-1]["id"] if rows else 0
    if head_id != last_id or (rows and head_hash != prev):
        return VerifyReport(
            False,
            len(rows),
            len(rows) + 1 if head_id > len(rows) else None,
            f"the chain ends at entry {len(rows)} but the ledger's head records entry {head_id}: "
            "entries were deleted from the end or the head was edited",
        )
    return VerifyReport(True, len(rows))


def check_signatures(rows: list[dict], key: bytes | None) -> str | None:
    """With a key: the newest entry must be signed, and every signed entry's MAC must be valid."""
    if key is None or not rows:
        return None
    sign = signer(key)
    bad = next((r for r in rows if r["mac"] is not None and not hmac.compare_digest(r["mac"], sign(r["hash"]))), None)
    if bad is not None:
        return f"entry {bad['id']} carries a signature that {KEY_ENV} did not make: the chain was rewritten"
    if rows[-1]["mac"] is None:
        return (
            f"the newest entry ({rows[-1]['id']}) is not signed with {KEY_ENV}: entries were written or rewritten "
            "without the key"
        )
    first = next(i for i, r in enumerate(rows) if r["mac"] is not None)
    unsigned = [r["id"] for r in rows[first:] if r["mac"] is None]
    if unsigned:
        return f"entry {unsigned[0]} is not signed although earlier ones are: it was written without the key"
    return None


def check_head(rows: list[dict], pinned: str) -> str | None:
    """``HASH`` or ``COUNT:HASH`` published earlier: the ledger must still contain it (and extend it)."""
    count, _, digest = pinned.rpartition(":")
    found = next((r for r in rows if r["hash"] == digest), None)
    if found is None:
        return f"the published head {digest[:16]}… is not in the chain: it was rewritten, or this is another ledger"
    if count and int(count) != found["id"]:
        return f"the published head was entry {count}, but that hash is entry {found['id']} now"
    return None


# --- the anchor in the user's data folder -----------------------------------------------------


def _anchor_name(ledger_path: Path | str) -> str:
    """The ledger as the anchor names it: a file's resolved path, or the URL without its password."""
    if backends.is_url(str(ledger_path)):
        return backends.redact(str(ledger_path))
    return str(Path(ledger_path).resolve())


def anchor_file(ledger_path: Path | str) -> Path:
    key = hashlib.sha256(_anchor_name(ledger_path).encode()).hexdigest()[:24]
    return backends.user_data_dir() / "anchors" / f"{key}.json"


def record_anchor(ledger_path: Path | str, count: int, head: str) -> None:
    """Remember the newest (count, head) this machine saw (best effort: never fails a write)."""
    file = anchor_file(ledger_path)
    try:
        seen = json.loads(file.read_text()) if file.is_file() else {}
        if seen.get("count", 0) > count:
            return
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "ledger": _anchor_name(ledger_path),
                    "count": count,
                    "head": head,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        )
        os.replace(tmp, file)
    except (OSError, ValueError):
        pass
    _refresh_floors(ledger_path)


def _refresh_floors(ledger_path: Path | str) -> None:
    """After a write: a handle in this process that verified the ledger checks the entries just written
    (only those) and moves the spend floor forward to them."""
    name = _anchor_name(ledger_path)
    for backend in list(_VERIFIED.keys()):
        if _anchor_name(backend.location) == name:
            verify_tail(backend)
            return


def read_anchor(ledger_path: Path | str) -> dict | None:
    """The newest (count, head) this machine recorded. Read it *before* the chain: the anchor only grows,
    so a chain read after it holds at least its entries, unless entries were removed. Read after the
    chain, a commit by another process in between would look like a truncation."""
    file = anchor_file(ledger_path)
    try:
        return json.loads(file.read_text()) if file.is_file() else None
    except (OSError, ValueError):
        return None


def check_anchor(seen: dict | None, rows: list[dict]) -> str | None:
    # by entry id, not position: a ledger whose deleted entries were accepted has gaps in its ids
    by_id = {r["id"]: r["hash"] for r in rows}
    return _anchor_problem(seen, rows[-1]["id"] if rows else 0, by_id.get)


def _anchor_problem(seen: dict | None, n_entries: int, hash_of) -> str | None:
    """``seen``: :func:`read_anchor`'s record; ``hash_of(i)``: the hash of entry ``i`` (1-based) of a chain of
    ``n_entries`` verified entries."""
    if not seen:
        return None
    if n_entries < seen["count"]:
        return (
            f"this machine saw {seen['count']} entries in this ledger (at {seen['time']}) and it now holds "
            f"{n_entries}: entries were removed, or an older backup or a new file replaced it"
        )
    if seen["count"] and hash_of(seen["count"]) != seen["head"]:
        return (
            f"entry {seen['count']} is not the one this machine saw at {seen['time']}: the chain was rewritten "
            "or replaced"
        )
    return None


def verify(backend, *, rows_digest=None, head: str | None = None, full: bool = True, on_rows=None) -> VerifyReport:
    """Every check above, over the whole chain. ``full`` adds the storage engine's own check (SQLite's
    page-by-page ``integrity_check``; PostgreSQL has none here) and the stored sketches' digests. ``on_rows(rows)``
    receives every verified entry when the chain verifies (the caller may keep what it needs)."""
    from privtrain.ledger.model import VerifyReport as Report

    seen = read_anchor(backend.location)  # before the chain (see read_anchor)
    try:
        check = backend.integrity_check(full=True) if full else None
        if check is not None and check != "ok":
            return Report(False, 0, None, f"SQLite integrity check failed: {check}")
        with backend.snapshot():  # the chain and its head record from one state, not across another's commit
            rows = backend.chain_rows()
            head_record = backend.head_record()
        report = check_chain(rows, head_record)
    except backend.errors as exc:
        return Report(False, 0, None, f"the ledger cannot be read: {exc}")
    if not report.ok:
        _VERIFIED.pop(backend, None)
        return report
    key = ledger_key()
    problem = check_signatures(rows, key) or (check_head(rows, head) if head else None) or check_anchor(seen, rows)
    if problem is None and full and rows_digest is not None:
        problem = _check_rows(backend, rows, rows_digest)
    if problem is None:
        _remember(backend, rows, key)
        if on_rows is not None:
            on_rows(rows)
    return Report(problem is None, len(rows), None, problem or "")


# --- admission: the chain once per open handle, then only its new tail --------------------------------

# backend -> (ledger key's digest, id and hash of the last verified entry, whether any entry up to it is signed)
_VERIFIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _key_digest(key: bytes | None) -> str | None:
    return hashlib.sha256(key).hexdigest() if key else None


# backend -> the spend of its verified entries (see ledger.floors), moved forward with each verified tail
_SPEND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember(backend, rows: list[dict], key: bytes | None) -> None:
    if rows:
        _VERIFIED[backend] = (_key_digest(key), rows[-1]["id"], rows[-1]["hash"], any(r["mac"] for r in rows))
        _SPEND[backend] = spend = floors.Spend()
        spend.add(rows)
        _record_floors(backend, rows[-1]["id"], rows[-1]["hash"], spend, key)


def _record_floors(backend, count: int, head: str, spend: floors.Spend, key: bytes | None) -> None:
    floors.record(anchor_file(backend.location), _anchor_name(backend.location), count, head, spend, key)


def read_floors(ledger_path: Path | str) -> dict | None:
    """This machine's record of the ledger's last verified spend (see :mod:`privtrain.ledger.floors`)."""
    return floors.read(anchor_file(ledger_path), _anchor_name(ledger_path), ledger_key())


def verify_tail(backend, *, on_rows=None) -> VerifyReport:
    """What admission checks before every reservation: the whole chain the first time on a handle, then the
    entries appended since the last verified one (that entry re-hashed and matched, each new one chained to
    the one before), the head record, the new entries' signatures and this machine's anchor. A new
    ``accepted`` entry, or anything that does not match, falls back to the whole chain (and ``on_rows``, as
    in :func:`verify`, receives it)."""
    from privtrain.ledger.model import VerifyReport as Report

    key = ledger_key()
    memo = _VERIFIED.get(backend)
    if memo is None or memo[0] != _key_digest(key):
        return verify(backend, full=False, on_rows=on_rows)
    _, last_id, last_hash, signed_before = memo
    seen = read_anchor(backend.location)  # before the chain (see read_anchor)
    try:
        with backend.snapshot():
            tail = backend.chain_rows(last_id)
            head = backend.head_record()
    except backend.errors as exc:
        return Report(False, 0, None, f"the ledger cannot be read: {exc}")
    if (
        not tail
        or tail[0]["id"] != last_id
        or tail[0]["hash"] != last_hash
        or store.entry_hash(tail[0]) != last_hash
        or any(r["status"] == "accepted" for r in tail[1:])
    ):
        return verify(backend, full=False, on_rows=on_rows)
    prev, expected = last_hash, last_id + 1
    for r in tail[1:]:
        if r["id"] != expected or r["prev_hash"] != prev or store.entry_hash(r) != r["hash"]:
            return verify(backend, full=False, on_rows=on_rows)  # names the entry
        prev, expected = r["hash"], expected + 1
    n = expected - 1
    if head != (n, prev):
        return verify(backend, full=False, on_rows=on_rows)
    problem = _tail_signatures(tail, key, signed_before)
    if problem is None:
        by_id = {r["id"]: r["hash"] for r in tail}
        problem = _anchor_problem(
            seen, n, lambda i: by_id[i] if i in by_id else (backend.entry_at(i) or {}).get("hash")
        )
    if problem is not None:
        return Report(False, n, None, problem)
    _VERIFIED[backend] = (_key_digest(key), n, prev, signed_before or any(r["mac"] for r in tail))
    spend = _SPEND.get(backend)
    if spend is not None and len(tail) > 1:
        spend.add(tail[1:])
        _record_floors(backend, n, prev, spend, key)
    return Report(True, n)


def _tail_signatures(tail: list[dict], key: bytes | None, signed_before: bool) -> str | None:
    """:func:`check_signatures` on the new entries, given whether any entry up to the tail was signed."""
    if key is None:
        return None
    problem = check_signatures(tail, key)
    if problem is None and signed_before:
        unsigned = [r["id"] for r in tail if r["mac"] is None]
        if unsigned:
            return f"entry {unsigned[0]} is not signed although earlier ones are: it was written without the key"
    return problem


def _check_rows(backend, rows: list[dict], rows_digest) -> str | None:
    """Each source's stored sketches against the digest its newest ``rows`` entry chained (entries from before
    sketches chain no ``sketches`` digest: what they described was deleted as invertible)."""
    digests = {}
    for r in rows:
        if r["status"] == "rows":
            detail = json.loads(r["detail"])
            if "sketches" in detail:
                digests[r["source"]] = detail["sketches"]
    for source in sorted(backend.sources_with_rows() | set(digests)):
        if rows_digest(backend.source_sketches(source)) != digests.get(source):
            return (
                f"the stored sketches of source {source[:24]!r} differ from what the chain recorded: a sketch "
                "was added, changed or deleted outside privtrain"
            )
    return None
