"""The PII gate: direct identifiers never go into training unless dropped or declared.

:func:`privtrain.data.load` calls :func:`check` on every CSV/Parquet table (and the built-ins, which
pass) while the recipe plans, so a refusal comes before the ledger reserves anything. Every column
the run would train on (features and target) and every column in ``dataset.drop`` is scanned by
name and by a sample of its values (:mod:`privtrain.data.pii`). A finding on a column used for
training is refused, with one line per finding, unless the column is declared in
``dataset.pii.allow``. What was found, declared and dropped is recorded in the run's dataset info
under ``pii`` (the model card shows it).

Not scanned, with the reason recorded: image folders and ``_target_`` datasets (tensors, not a
table) and rows written by ``privtrain run synthetic`` (already through that recipe's PII handling).
The synthetic recipe itself scans and records but does not refuse: its handling (SDV's Faker
anonymizers for SDV synthesizers, the declared domain for the DP synthesizer) is the declared
treatment of those columns (see :func:`check`'s ``handling``).
"""

from __future__ import annotations

import pandas as pd

from privtrain.data.pii import detect
from privtrain.errors import UserError

NOT_A_TABLE = "not a table (images or a _target_ dataset): the PII gate scans tables only"
DERIVED = "rows written by privtrain run synthetic: PII columns were anonymized or left out by that run"


class IdentifiersFound(UserError):
    """A table would train on direct identifiers: one line, then one line per finding."""

    multiline = True


def check(
    frame: pd.DataFrame, used: list[str], *, drop=(), allow=(), handling: str | None = None, where: str = "dataset"
) -> dict:
    """Scan ``used`` and ``drop`` columns of ``frame``; refuse findings on used columns not in ``allow``.

    Args:
        frame: the raw table.
        used: the columns the run trains on (features and target).
        drop: ``dataset.drop``: columns removed before training (scanned, so the card can say what they held).
        allow: ``dataset.pii.allow``: columns the user declares as personal data used on purpose.
        handling: None to refuse; otherwise the recipe's own treatment of the findings (recorded as their
            status, nothing refused), e.g. the synthetic recipe's anonymization.
        where: the file, for the message.

    Returns:
        ``{"scanned": True, "findings": [{column, kind, reason, status}...], "allowed": [...], "dropped": [...]}``.

    Raises:
        UserError: an ``allow`` or ``drop`` entry that is not a column of the table.
        IdentifiersFound: findings on used columns that are neither dropped nor allowed (``handling`` None).
    """
    for key, columns in (("dataset.drop", drop), ("dataset.pii.allow", allow)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise UserError(f"{key}: column(s) {missing} are not in {where}; columns are {list(frame.columns)[:20]}.")
    dropped, allowed = [c for c in drop if c not in used], list(allow)
    findings = detect(frame, columns=[*used, *dropped])
    refused = [f for f in findings if f.column in used and f.column not in allowed]
    if refused and handling is None:
        names = ",".join(f.column for f in refused)
        head = (
            f"{where}: {len(refused)} column(s) used for training hold direct identifiers; nothing was charged. "
            f"Drop them with dataset.drop=[{names}] or, if they must be used, declare them with "
            f"dataset.pii.allow=[{names}] (recorded in the model card):"
        )
        raise IdentifiersFound(
            "\n".join([head, *(f"  {f.column}: {f.kind.replace('_', ' ')} ({f.reason})" for f in refused)])
        )
    status = {c: "dropped" for c in dropped} | {c: "allowed" for c in allowed}
    return {
        "scanned": True,
        "findings": [
            {"column": f.column, "kind": f.kind, "reason": f.reason, "status": status.get(f.column, handling)}
            for f in findings
        ],
        "allowed": allowed,
        "dropped": dropped,
    }


def skipped(reason: str) -> dict:
    """The record of a dataset the gate does not scan, and why."""
    return {"scanned": False, "reason": reason, "findings": [], "allowed": [], "dropped": []}
