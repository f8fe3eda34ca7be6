"""Whose data a run touches: the data source, the thing a privacy budget protects.

A budget protects people, so it belongs to a *source*, not to a file or a recipe:

- a built-in dataset is its own source (``digits``);
- a file declares its source with ``dataset.source=NAME``, or declares that it was derived from a known
  source's table with ``dataset.derived_from=NAME`` (charged to NAME);
- otherwise the table's content fingerprint identifies it (shown under the file's stem).

The ledger also recognises tables that hold a known source's people (a subset, appended rows, another
format, rescaled, renamed or recoded columns) and charges them there; see :mod:`privtrain.ledger.overlap`.
This module is a leaf: plain values that the config layer, the data layer and the ledger share.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("builtin", "declared", "content", "derived")


@dataclass(frozen=True)
class Source:
    """A data source.

    Attributes:
        key: the ledger's budget key: a built-in or declared name, or a 64-hex content fingerprint.
        name: what people read (the built-in or declared name, or the file's stem).
        kind: ``builtin``, ``declared``, ``content`` (identified by its fingerprint) or ``derived``
            (rows written by a synthesizer; the ledger knows their parent).
        derived_from: declared with ``dataset.derived_from``: ``key`` names the known source the table was
            derived from (kind ``declared``); the ledger checks that it knows it.
    """

    key: str
    name: str
    kind: str
    derived_from: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Expected source kind={self.kind!r} to be one of {', '.join(KINDS)}.")
        if not self.key:
            raise ValueError("Expected a non-empty source key.")

    @property
    def declared(self) -> bool:
        """A name the user or privtrain states, rather than one read off the content."""
        return self.kind in ("builtin", "declared")


def check_name(name: str, field: str = "dataset.source") -> str:
    """A declared source name: letters, digits, ``-``, ``_`` and ``.``, not a 64-hex fingerprint."""
    from privtrain.errors import UserError

    text = str(name).strip()
    ok = text and all(c.isalnum() or c in "-_." for c in text) and not text.startswith(".")
    if not ok:
        raise UserError(
            f"{field}={name!r} is not a valid source name; use letters, digits, '-', '_' or '.', "
            "e.g. dataset.source=patients."
        )
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower()):
        raise UserError(f"{field}={name!r} looks like a fingerprint; give the source a readable name.")
    return text
