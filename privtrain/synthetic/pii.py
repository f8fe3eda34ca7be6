"""The synthetic recipe's PII helpers, on top of privtrain's one detector (:mod:`privtrain.data.pii`).

SDV types a column as PII only when its *name* matches a known sdtype (``email``,
``phone_number``, ``ssn``...). A column of person names called ``customer``, or of
e-mails called ``contact``, is typed ``categorical`` and its values are copied verbatim
into the synthetic rows. The detector looks at the name *and* at a sample of the values,
so those columns are caught and handed to SDV's anonymizers (Faker) instead; this module
then checks the output for verbatim leaks and replaces chance collisions with real values.
"""

from __future__ import annotations

import secrets

import pandas as pd

from privtrain.data.pii import FAKER_SDTYPES, PII_SDTYPES, Finding, check_column, detect

__all__ = ["FAKER_SDTYPES", "PII_SDTYPES", "Finding", "check_column", "detect", "verbatim_leaks", "scrub_collisions"]


def _real_values(real: pd.DataFrame, columns) -> set[str]:
    """Every real value of every PII column: an e-mail is a real person's whichever column it lands in."""
    return {v for c in columns if c in real.columns for v in real[c].dropna().astype(str)}


def verbatim_leaks(real: pd.DataFrame, synthetic: pd.DataFrame, columns) -> dict[str, int]:
    """Per PII column, how many synthetic values equal a real value of any PII column."""
    seen = _real_values(real, columns)
    return {c: int(synthetic[c].dropna().astype(str).isin(seen).sum()) for c in columns if c in synthetic.columns}


def scrub_collisions(
    real: pd.DataFrame, synthetic: pd.DataFrame, findings: list[Finding], *, seed: int, locales=("en_US",)
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Replace any PII value that happens to equal a real one (Faker can draw a real name by chance).

    Returns the scrubbed frame and, per column, how many values were replaced. The replacement is
    a fresh Faker value of the same sdtype (or a random token), never a real value, and keeps
    unique columns unique.
    """
    from faker import Faker

    fake = Faker(list(locales))
    fake.seed_instance(seed)
    synthetic = synthetic.copy()
    replaced = {}
    seen = _real_values(real, [f.column for f in findings])
    for f in findings:
        if f.column not in synthetic.columns:
            continue
        column = synthetic[f.column]
        hits = column.notna() & column.astype(str).isin(seen)
        if not hits.any():
            continue
        used = set(column.astype(str)) | seen
        provider = getattr(fake, f.sdtype, None) if f.sdtype in FAKER_SDTYPES else None
        values = []
        for _ in range(int(hits.sum())):
            value = None
            for _ in range(20):
                candidate = str(provider()) if provider else f"pii-{secrets.token_hex(5)}"
                if candidate not in used:
                    value = candidate
                    break
            value = value or f"pii-{secrets.token_hex(8)}"
            used.add(value)
            values.append(value)
        synthetic[f.column] = column.astype(object)
        synthetic.loc[hits, f.column] = values
        replaced[f.column] = len(values)
    return synthetic, replaced
