"""Sections a later command adds to a card a run wrote (``model_card.md``, ``report.md``), added so that
removing them gives back, byte for byte, the card the run recorded.

A run's commit chains the hash of its card. An audit later adds its section and, on a red flag, a banner
under the title. Each addition is one block, ``START\\ncontent\\nEND\\n\\n``, inserted at the start of a
line and nothing else is touched, so :func:`body` (the card with every block removed) must hash to what
the run itself recorded. That is how ``privtrain verify`` and ``privtrain release`` tell an audit from an
edit: text outside the blocks can only be what the run wrote.

    >>> card = "# Card\\n\\nclaims\\n\\n## Provenance\\n\\n- git\\n"
    >>> audited = insert(card, AUDIT_SECTION, "## Audit", before="## Provenance")
    >>> body(audited) == card
    True
"""

from __future__ import annotations

AUDIT_SECTION = ("<!-- privtrain-audit:start -->", "<!-- privtrain-audit:end -->")
AUDIT_BANNER = ("<!-- privtrain-audit-flag:start -->", "<!-- privtrain-audit-flag:end -->")
MARKERS = (AUDIT_BANNER, AUDIT_SECTION)


def block(markers: tuple[str, str], content: str) -> str:
    """The exact text of one added block (what :func:`remove` takes out again)."""
    return f"{markers[0]}\n{content.strip(chr(10))}\n{markers[1]}\n\n"


def remove(text: str, markers: tuple[str, str]) -> str:
    """``text`` without any block between ``markers``, each removed exactly as :func:`block` wrote it."""
    while True:
        start = text.find(markers[0])
        end = text.find(markers[1], start + 1) if start >= 0 else -1
        if end < 0:
            return text
        stop = end + len(markers[1])
        stop += len(text[stop : stop + 2]) - len(text[stop : stop + 2].lstrip("\n"))  # the block's own "\n\n"
        text = text[:start] + text[stop:]


def body(text: str) -> str:
    """The card without any block a later command added: what its run wrote, if nobody edited it."""
    for markers in MARKERS:
        text = remove(text, markers)
    return text


def insert(
    text: str, markers: tuple[str, str], content: str, *, before: str | None = None, after_title: bool = False
) -> str:
    """Add one block at the start of a line: before the line ``before`` (else at the end), or under the
    ``# `` title and its blank line. Any earlier block with the same markers is removed first."""
    text = remove(text, markers)
    lines = text.split("\n")
    at = len(text)
    if after_title:
        title = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
        if title is not None:
            row = title + 1 + (title + 1 < len(lines) - 1 and lines[title + 1] == "")
            at = sum(len(line) + 1 for line in lines[:row])
    elif before is not None and f"\n{before}" in text:
        at = text.index(f"\n{before}") + 1
    return text[:at] + block(markers, content) + text[at:]
