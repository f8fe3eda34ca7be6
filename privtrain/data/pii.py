"""Direct identifiers in a table, found by column name and by a sample of the values.

The one PII detector of privtrain: the PII gate (:mod:`privtrain.data.pii_gate`) runs it on every
file dataset before any charge, and the synthetic recipe runs it to hand what SDV's name-based
detection misses to SDV's anonymizers (:mod:`privtrain.synthetic.pii`).

Kinds, and what a value must be to count (checksums are verified, not just shapes):

- ``email``, ``phone`` (7-15 digits with a separator or ``+``), ``person_name`` (capitalised words);
- ``ssn`` (US, ``AAA-GG-SSSS`` with the SSA's impossible areas/groups/serials excluded),
  ``ni_number`` (UK National Insurance, HMRC's prefix rules), ``national_id`` (by column name only);
- ``iban`` (ISO 13616 mod-97 check), ``credit_card`` (12-19 digits passing the Luhn check);
- ``ipv4``, ``ipv6`` (parsed by :mod:`ipaddress`), ``street_address``;
- ``date_of_birth``: a name such as ``dob``/``birth_date``, or date values whose median lies 15-100 years
  ago and which spread over years, as birth dates do;
- ``free_text``: long, mostly unique multi-word strings (notes, messages), which carry names and more.

A column is flagged when its name says so, or when most sampled values (80%; 50% if the name hints at
a person, e.g. ``customer``) are of one kind. Only :data:`SAMPLE` values per column are read.

Example:
    >>> import pandas as pd
    >>> people = ["Ann Lee", "Bo Chen", "Cy Diaz", "Di Park", "Ed Ruiz", "Flo Kim"]
    >>> frame = pd.DataFrame({"customer": people * 4, "plan": ["Gold Plus", "Basic"] * 12})
    >>> [(f.column, f.kind) for f in detect(frame)]
    [('customer', 'person_name')]
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import pandas as pd

SAMPLE = 200  # values read per column: the scan's cost does not grow with the table

# sdtypes SDV can anonymize with Faker (rdt's SDTYPE_ANONYMIZERS); anything else PII becomes 'unknown' + pii.
FAKER_SDTYPES = (
    "address",
    "email",
    "ipv4_address",
    "ipv6_address",
    "mac_address",
    "name",
    "phone_number",
    "ssn",
    "user_agent_string",
)
# sdtypes that are identifiers or personal data whatever SDV calls them (its PII sdtypes plus keys).
PII_SDTYPES = frozenset(FAKER_SDTYPES) | {
    "id",
    "first_name",
    "last_name",
    "street_address",
    "secondary_address",
    "postcode",
    "iban",
    "swift11",
    "swift8",
    "credit_card_number",
    "vin",
    "license_plate",
    "latitude",
    "longitude",
    "city",
    "administrative_unit",
    "state_abbr",
    "country_code",
}
# privtrain's kind -> the sdtype SDV should anonymize it as.
SDTYPE = {
    "email": "email",
    "phone": "phone_number",
    "person_name": "name",
    "ssn": "ssn",
    "ipv4": "ipv4_address",
    "ipv6": "ipv6_address",
    "street_address": "address",
    "iban": "unknown",
    "credit_card": "unknown",
    "ni_number": "unknown",
    "national_id": "unknown",
    "date_of_birth": "unknown",
    "free_text": "unknown",
}
KINDS = tuple(SDTYPE)

_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
_SSN = re.compile(r"^(\d{3})-(\d{2})-(\d{4})$")
_NINO = re.compile(r"^([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]$")
_NINO_NEVER = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}  # prefixes HMRC never issues
_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_CARD = re.compile(r"^\d{4}([ -]?\d{2,7}){1,4}$|^\d{12,19}$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_PHONE_EXT = re.compile(r"\s*(x|ext\.?)\s*\d{1,6}$", re.I)
_PHONE = re.compile(r"^\+?[\d\s().-]+$")
_SUFFIXES = (
    "St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Lane|Ln|Dr|Drive|Way|Court|Ct|Place|Pl|Terrace|Close|"
    "Square|Sq|Crescent|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Loop|Row|Walk|Alley|Plaza|Ridge|Hill|"
    "Hills|Heights|Park|Village|Gardens|Crossing|Junction|Harbor|Harbors|Port|Ports|Point|Points|Mission|"
    "Valley|Views?|Estates?|Fields?|Forks?|Glens?|Greens?|Groves?|Islands?|Lakes?|Landing|Lights?|"
    "Meadows?|Mills?|Mountains?|Oval|Pass|Pines|Plains?|Radial|Ranch|Rapids?|Shoals?|Shores?|Springs?|"
    "Squares?|Stations?|Stravenue|Streets?|Summit|Track|Trafficway|Tunnel|Turnpike|Union|Unions|Vista|"
    "Wells?|Bypass|Cape|Causeway|Center|Centers|Cliffs?|Club|Common|Corners?|Course|Courts|Coves?|"
    "Creek|Curve|Dale|Dam|Divide|Expressway|Extensions?|Falls|Ferry|Flats?|Ford|Fords|Forest|Freeway|"
    "Gateway|Haven|Inlet|Keys?|Knolls?|Locks?|Lodge|Manors?|Neck|Orchard|Overpass|Path|Pike|Prairie|"
    "Ramp|Rest|Rue|Routes?|Run|Shoal|Skyway|Spur|Underpass|Via|Ville|Wall|Ways|Bridge|Brook|Brooks|"
    "Burg|Burgs|Bluffs?|Bottom|Branch|Camp|Canyon|Cove|Crest"
)
_ADDRESS = re.compile(
    r"^\d{1,6}\s+[A-Za-z][\w .'-]*(\n|,)?.*\b[A-Z]{2}\s+\d{5}$|"
    r"^\d{1,6}\s+([A-Z][a-z]+\s+){1,3}(" + _SUFFIXES + r")\b\.?|"
    r"^\d{1,6}\s+[A-Z][a-z]+(\s+[A-Z][a-z]+){1,3}\s+(Apt\.|Suite|Unit|Flat)\s+\d+$",
    re.S,
)
_NAME = re.compile(
    r"^(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+)?[A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+|\s+[A-Z]\.){1,3}"
    r"(?:\s+(?:Jr|Sr|II|III|IV|MD|PhD|DDS|DVM)\.?)?$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T][\d:.]+)?$|^\d{1,2}[/.-]\d{1,2}[/.-]\d{4}$")


def luhn_ok(digits: str) -> bool:
    """True when a digit string passes the Luhn check (payment card numbers do; 1 in 10 random strings do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    """True for an IBAN whose ISO 7064 mod-97 check digits are right (spaces allowed)."""
    compact = value.replace(" ", "").upper()
    if not _IBAN.match(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def is_card(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    return bool(_CARD.match(value)) and 12 <= len(digits) <= 19 and luhn_ok(digits)


def is_ssn(value: str) -> bool:
    m = _SSN.match(value)
    if not m:
        return False
    area, group, serial = m.groups()
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def is_ni_number(value: str) -> bool:
    m = _NINO.match(value.upper())
    return m is not None and m.group(1) not in _NINO_NEVER


def _parses(address_type, value: str) -> bool:
    try:
        address_type(value)
    except ValueError:
        return False
    return True


def is_ipv4(value: str) -> bool:
    return bool(_IPV4.match(value)) and _parses(ipaddress.IPv4Address, value)


def is_ipv6(value: str) -> bool:
    return value.count(":") >= 2 and _parses(ipaddress.IPv6Address, value)


def is_phone(value: str) -> bool:
    """7-15 digits with a separator or a leading ``+`` (a bare digit string is not called a phone number)."""
    main = _PHONE_EXT.sub("", value)
    digits = sum(ch.isdigit() for ch in main)
    return bool(_PHONE.match(main)) and 7 <= digits <= 15 and not main.isdigit() and not _DATE.match(main)


# Per-value checks, most specific first: the first kind most values pass wins.
_VALUE_CHECKS = (
    ("email", _EMAIL.match),
    ("iban", iban_ok),
    ("credit_card", is_card),
    ("ssn", is_ssn),
    ("ni_number", is_ni_number),
    ("ipv4", is_ipv4),
    ("ipv6", is_ipv6),
    ("street_address", _ADDRESS.match),
    ("phone", is_phone),
    ("person_name", _NAME.match),
)
# Column-name tokens (also joined: "birth_date" -> "birthdate"). Strong ones flag a column by name alone,
# in this order ("email_address" is an e-mail); weak ones only lower the content threshold.
_STRONG_NAMES = {
    "email": "email",
    "mail": "email",
    "phone": "phone",
    "mobile": "phone",
    "telephone": "phone",
    "tel": "phone",
    "ssn": "ssn",
    "nino": "ni_number",
    "ninumber": "ni_number",
    "nationalinsurance": "ni_number",
    "passport": "national_id",
    "nationalid": "national_id",
    "taxid": "national_id",
    "iban": "iban",
    "creditcard": "credit_card",
    "cardnumber": "credit_card",
    "ccnumber": "credit_card",
    "ip": "ipv4",
    "ipaddress": "ipv4",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "address": "street_address",
    "street": "street_address",
    "streetaddress": "street_address",
    "firstname": "person_name",
    "lastname": "person_name",
    "fullname": "person_name",
    "surname": "person_name",
    "dob": "date_of_birth",
    "birthdate": "date_of_birth",
    "dateofbirth": "date_of_birth",
    "birthday": "date_of_birth",
}
_WEAK_NAMES = {
    "name",
    "customer",
    "client",
    "patient",
    "person",
    "user",
    "contact",
    "owner",
    "employee",
    "member",
    "buyer",
    "seller",
    "holder",
    "notes",
    "note",
    "comment",
    "comments",
    "text",
}


@dataclass(frozen=True)
class Finding:
    """One column that holds direct identifiers.

    Attributes:
        column: the column's name.
        sdtype: the sdtype SDV should anonymize it as (``unknown`` when Faker has no match).
        reason: why, in words (never a value from the data).
        source: ``"privtrain"`` (this detector) or ``"sdv"`` (SDV's own detection).
        kind: privtrain's kind (see the module docstring); SDV's sdtype for SDV's findings.
    """

    column: str
    sdtype: str
    reason: str
    source: str
    kind: str = ""

    def to_dict(self) -> dict:
        return {
            "column": self.column,
            "kind": self.kind or self.sdtype,
            "sdtype": self.sdtype,
            "reason": self.reason,
            "source": self.source,
        }


def _tokens(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if p]
    return set(parts) | {"".join(parts)}


def _sample(values: pd.Series) -> pd.Series:
    values = values.dropna()
    if len(values) > SAMPLE:
        values = values.sample(SAMPLE, random_state=0)
    if pd.api.types.is_float_dtype(values):
        values = values[values == values.round()].astype("int64")  # 4.1111e15 read as float is still a number
    text = values.astype(str).str.strip()
    return text[text != ""]


def _value_kind(sample: pd.Series, threshold: float) -> tuple[str | None, float]:
    """The first kind that at least ``threshold`` of the values pass, and that share (or the best share)."""
    best = 0.0
    for kind, check in _VALUE_CHECKS:
        share = float(sample.map(lambda v, check=check: bool(check(v))).mean())
        if share >= threshold:
            return kind, share
        best = max(best, share)
    return None, best


def _birth_dates(sample: pd.Series, threshold: float) -> float:
    """The share of date values, when they look like birth dates (else 0): median 15-100 years ago, spread over
    at least five years (dates of visits or orders cluster in recent years)."""
    dates = sample[sample.str.match(_DATE)]
    if len(dates) < threshold * len(sample) or len(dates) < 5:
        return 0.0
    parsed = pd.to_datetime(dates, errors="coerce", format="mixed")
    parsed = parsed.dropna()
    if len(parsed) < threshold * len(sample):
        return 0.0
    now = pd.Timestamp.now()
    years = parsed.dt.year + parsed.dt.dayofyear / 366.0
    age = now.year + now.dayofyear / 366.0 - years.median()
    spread = years.quantile(0.75) - years.quantile(0.25)
    return len(parsed) / len(sample) if 15 <= age <= 100 and spread >= 5 and parsed.max() <= now else 0.0


def _free_text(sample: pd.Series) -> bool:
    """Long, mostly unique multi-word strings: notes and messages, where names and numbers hide."""
    words = sample.str.count(r"\s+") + 1
    return (
        len(sample) >= 5
        and words.mean() >= 6
        and sample.str.len().mean() >= 40
        and sample.nunique() >= 0.5 * len(sample)
    )


def check_column(name: str, values: pd.Series) -> Finding | None:
    """This detector's verdict on one column, or None when it does not look like a direct identifier."""
    tokens = _tokens(name)
    strong = next((kind for token, kind in _STRONG_NAMES.items() if token in tokens), None)
    hinted = strong is not None or bool(tokens & _WEAK_NAMES)
    threshold = 0.5 if hinted else 0.8
    hint = f"column name {name!r} and " if hinted else ""
    textual = not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))
    if textual or pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
        sample = _sample(values) if textual or _large_integers(values) else None
        kind, share = (None, 0.0) if sample is None or sample.empty else _value_kind(sample, threshold)
        # Person names are only names if they vary: 'New York' repeated is a category, not a person.
        if kind == "person_name" and values.nunique(dropna=True) < (5 if hinted else 20):
            kind = None
        if kind is None and textual and sample is not None and not sample.empty:
            share = _birth_dates(sample, threshold)
            kind = "date_of_birth" if share else ("free_text" if _free_text(sample) else None)
            share = share or 1.0
        if kind is not None:
            what = "free text (long multi-word strings)" if kind == "free_text" else kind.replace("_", " ")
            return Finding(
                name, SDTYPE[kind], f"{hint}{share:.0%} of sampled values look like {what}", "privtrain", kind
            )
    if strong is not None:
        sdtype = SDTYPE[strong] if textual else "unknown"
        return Finding(name, sdtype, f"column name {name!r} suggests {strong.replace('_', ' ')}", "privtrain", strong)
    return None


def _large_integers(values: pd.Series) -> bool:
    """Numbers long enough to be card numbers (12+ digits); other numeric columns are measurements."""
    numbers = values.dropna()
    return not numbers.empty and float(numbers.abs().max()) >= 1e11


def detect(
    frame: pd.DataFrame, skip: set[str] | frozenset[str] = frozenset(), columns: list[str] | None = None
) -> list[Finding]:
    """Findings for ``columns`` of ``frame`` (default: every column) except those in ``skip``."""
    out = []
    for column in frame.columns if columns is None else columns:
        if column in skip:
            continue
        finding = check_column(str(column), frame[column])
        if finding is not None:
            out.append(finding)
    return out
