"""privtrain's own PII check, by column name and by content, on top of SDV's detection.

SDV types a column as PII only when its *name* matches a known sdtype (``email``,
``phone_number``, ``ssn``...). A column of person names called ``customer``, or of
e-mails called ``contact``, is typed ``categorical`` and its values are copied verbatim
into the synthetic rows. This module looks at the name *and* at a sample of the values,
so those columns are caught and handed to SDV's anonymizers (Faker) instead.

Example:
    >>> import pandas as pd
    >>> people = ["Ann Lee", "Bo Chen", "Cy Diaz", "Di Park", "Ed Ruiz", "Flo Kim"]
    >>> frame = pd.DataFrame({"customer": people * 4, "plan": ["Gold Plus", "Basic"] * 12})
    >>> [(f.column, f.sdtype) for f in detect(frame)]
    [('customer', 'name')]
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import pandas as pd

# sdtypes SDV can anonymize with Faker (rdt's SDTYPE_ANONYMIZERS); anything else PII becomes 'unknown' + pii.
FAKER_SDTYPES = ("address", "email", "ipv4_address", "ipv6_address", "mac_address", "name", "phone_number",
                 "ssn", "user_agent_string")
# sdtypes that are identifiers or personal data whatever SDV calls them (its PII sdtypes plus keys).
PII_SDTYPES = frozenset(FAKER_SDTYPES) | {
    "id", "first_name", "last_name", "street_address", "secondary_address", "postcode", "iban", "swift11",
    "swift8", "credit_card_number", "vin", "license_plate", "latitude", "longitude", "city",
    "administrative_unit", "state_abbr", "country_code",
}

_CONTENT = {  # sdtype -> a regex that a whole value must match
    "email": re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$"),
    "ssn": re.compile(r"^\d{3}-\d{2}-\d{4}$"),
    "ipv4_address": re.compile(r"^(\d{1,3}\.){3}\d{1,3}$"),
    "phone_number": re.compile(r"^(?=(?:\D*\d){7,15}\D*$)\+?[\d\s().-]{7,}(\s*(x|ext\.?)\s*\d{1,6})?$"),
    "address": re.compile(r"^\d{1,6}\s+[A-Za-z][\w .'-]*(\n|,)?.*\b[A-Z]{2}\s+\d{5}$|^\d{1,6}\s+[A-Z][a-z]+(\s+[A-Z][a-z]+)*\s+"
                          r"(St|Street|Ave|Avenue|Rd|Road|Blvd|Lane|Ln|Dr|Drive|Way|Court|Ct|Place|Pl)\b", re.S),
    "name": re.compile(r"^(?:(?:Mr|Mrs|Ms|Dr|Prof)\.?\s+)?[A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+|\s+[A-Z]\.){1,3}"
                       r"(?:\s+(?:Jr|Sr|II|III|IV|MD|PhD|DDS|DVM)\.?)?$"),
}
# Column-name tokens: strong ones are PII by name alone; weak ones need the content to agree.
_STRONG_NAMES = {
    "email": "email", "mail": "email", "phone": "phone_number", "mobile": "phone_number", "telephone": "phone_number",
    "ssn": "ssn", "passport": "unknown", "iban": "unknown", "address": "address", "street": "address",
    "firstname": "name", "lastname": "name", "fullname": "name", "surname": "name", "dob": "unknown",
    "birthdate": "unknown", "creditcard": "unknown", "ip": "ipv4_address",
}
_WEAK_NAMES = {"name", "customer", "client", "patient", "person", "user", "contact", "owner", "employee", "member",
               "buyer", "seller", "holder", "tel"}
_SAMPLE = 200


@dataclass(frozen=True)
class Finding:
    """One PII column: the sdtype SDV should anonymize it as, and why."""

    column: str
    sdtype: str
    reason: str
    source: str  # "sdv" (SDV's detection) or "privtrain" (what SDV missed)

    def to_dict(self) -> dict:
        return {"column": self.column, "sdtype": self.sdtype, "reason": self.reason, "source": self.source}


def _tokens(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if p]
    return set(parts) | {"".join(parts)}


def _content_sdtype(values: pd.Series, threshold: float) -> tuple[str | None, float]:
    """The Faker sdtype most of ``values`` match, and the share that matches it."""
    sample = values.dropna().astype(str).str.strip()
    sample = sample[sample != ""]
    if sample.empty:
        return None, 0.0
    sample = sample.sample(min(_SAMPLE, len(sample)), random_state=0) if len(sample) > _SAMPLE else sample
    best, share = None, 0.0
    for sdtype, pattern in _CONTENT.items():
        frac = float(sample.map(lambda v: bool(pattern.match(v))).mean())
        if frac > share:
            best, share = sdtype, frac
    return (best, share) if share >= threshold else (None, share)


def check_column(name: str, values: pd.Series) -> Finding | None:
    """privtrain's verdict on one column, or None when it does not look like personal data."""
    tokens = _tokens(name)
    strong = next((s for t, s in _STRONG_NAMES.items() if t in tokens), None)
    weak = bool(tokens & _WEAK_NAMES)
    textual = not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))
    if textual:
        # Person names are only names if they vary: 'New York' repeated is a category, not a person.
        sdtype, share = _content_sdtype(values, 0.5 if (strong or weak) else 0.8)
        if sdtype == "name" and values.nunique(dropna=True) < (5 if (strong or weak) else 20):
            sdtype = None
        if sdtype is not None:
            hint = f"column name {name!r} and " if (strong or weak) else ""
            return Finding(name, sdtype, f"{hint}{share:.0%} of sampled values look like {sdtype}", "privtrain")
    if strong is not None:
        sdtype = strong if (textual or strong == "unknown") else "unknown"
        return Finding(name, sdtype, f"column name {name!r} suggests {strong.replace('_', ' ')}", "privtrain")
    return None


def detect(frame: pd.DataFrame, skip: set[str] | frozenset[str] = frozenset()) -> list[Finding]:
    """privtrain's PII findings for every column of ``frame`` except those in ``skip``."""
    out = []
    for column in frame.columns:
        if column in skip:
            continue
        finding = check_column(str(column), frame[column])
        if finding is not None:
            out.append(finding)
    return out


def _real_values(real: pd.DataFrame, columns) -> set[str]:
    """Every real value of every PII column: an e-mail is a real person's whichever column it lands in."""
    return {v for c in columns if c in real.columns for v in real[c].dropna().astype(str)}


def verbatim_leaks(real: pd.DataFrame, synthetic: pd.DataFrame, columns) -> dict[str, int]:
    """Per PII column, how many synthetic values equal a real value of any PII column."""
    seen = _real_values(real, columns)
    return {c: int(synthetic[c].dropna().astype(str).isin(seen).sum()) for c in columns if c in synthetic.columns}


def scrub_collisions(real: pd.DataFrame, synthetic: pd.DataFrame, findings: list[Finding], *, seed: int,
                     locales=("en_US",)) -> tuple[pd.DataFrame, dict[str, int]]:
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
