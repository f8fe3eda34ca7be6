"""The licence policy: each installed distribution's licence, classified, with the ones a reviewer must read flagged.

The licences come from the CycloneDX SBOM (:mod:`privtrain.artifacts.sbom`), which reads each
distribution's metadata: ``License-Expression`` (an SPDX expression), else ``License``, plus the
``License ::`` trove classifiers. Each is put in one class:

- ``permissive``: MIT, BSD, Apache, ISC, PSF, Zlib, Boost (BSL-1.0), public domain, ...: not flagged;
- ``non-production``: the Business Source License 1.1 (BUSL-1.1) of SDV, RDT, Copulas, CTGAN and
  DeepEcho: free for non-production use only;
- ``strong copyleft``: GPL and AGPL: distributing (or, for AGPL, serving) a combined work requires its source;
- ``weak copyleft``: LGPL, MPL, EPL, CDDL: changes to those libraries' own files must be shared;
- ``unknown``: no licence in the metadata, or one this policy does not recognise.

Every class but ``permissive`` is flagged. An SPDX ``A OR B`` takes the more permissive choice;
``A AND B`` and several declared licences take the most restrictive one (a declared licence wins
over an unrecognised classifier).
"""

from __future__ import annotations

import csv
import io
import re

PERMISSIVE, WEAK, STRONG, NON_PRODUCTION, UNKNOWN = (
    "permissive",
    "weak copyleft",
    "strong copyleft",
    "non-production",
    "unknown",
)
# Worst last: a combination takes the highest rank.
RANK = {PERMISSIVE: 0, UNKNOWN: 1, WEAK: 2, STRONG: 3, NON_PRODUCTION: 4}
WHY = {
    NON_PRODUCTION: "Business Source License 1.1: non-production use only (a production licence is needed)",
    STRONG: "strong copyleft: a distributed combined work must ship its source under the same licence",
    WEAK: "weak copyleft: modified files of this library must be shared under its licence",
    UNKNOWN: "licence unknown: read the package's licence before use",
}
# Order matters: BUSL before BSL (Boost), AGPL/LGPL before GPL.
_RULES = [
    (NON_PRODUCTION, r"\bbusl|business source"),
    (WEAK, r"\blgpl|lesser general public|library general public|\bmpl|mozilla public|\bepl-|eclipse public|\bcddl"),
    (STRONG, r"\bagpl|affero|\bgpl|general public license"),
    (
        PERMISSIVE,
        r"\bmit\b|\bbsd|\b0bsd|\bapache|\bisc\b|\bpsf|python software foundation|\bpython-2\.0|\bzlib|"
        r"\bbsl-1\.0|\bboost|\bunlicense|public domain|\bcc0|\bhpnd|\bwtfpl|\bncsa|\bx11|"
        r"historical permission|\bpostgresql",
    ),
]


def classify_one(text: str) -> str:
    """The class of one licence id, name, classifier or SPDX expression."""
    text = text.strip()
    if re.search(r"\s(OR|or)\s", text) and "(" not in text:
        return min((classify_one(t) for t in re.split(r"\s+(?:OR|or)\s+", text)), key=RANK.__getitem__)
    if re.search(r"\s(AND|and)\s", text):
        return max((classify_one(t) for t in re.split(r"\s+(?:AND|and)\s+", text.strip("() "))), key=RANK.__getitem__)
    lowered = re.sub(r"\s+with\s+.*$", "", text.lower().strip("() "))  # `Apache-2.0 WITH LLVM-exception`
    for cls, pattern in _RULES:
        if re.search(pattern, lowered):
            return cls
    return UNKNOWN


def classify(licences: list[str]) -> str:
    """The class of a distribution that declares ``licences`` (several entries: the most restrictive known)."""
    classes = [classify_one(t) for t in licences if t.strip()]
    known = [c for c in classes if c != UNKNOWN]
    if not known:
        return UNKNOWN
    return max(known, key=RANK.__getitem__)


def component_licences(component: dict) -> list[str]:
    """The licence strings of one CycloneDX component (JSON)."""
    out = []
    for entry in component.get("licenses", []):
        if "expression" in entry:
            out.append(entry["expression"])
        else:
            lic = entry.get("license", {})
            text = lic.get("id") or lic.get("name")
            if text:
                out.append(text.removeprefix("License :: OSI Approved :: ").removeprefix("License :: "))
    return out


def summarize(bom: dict) -> list[dict]:
    """One row per distribution in the SBOM: name, version, licences, class, flag reason (or '')."""
    rows = []
    for c in bom.get("components", []):
        licences = component_licences(c)
        cls = classify(licences)
        rows.append(
            {
                "name": c["name"],
                "version": c.get("version", ""),
                "licence": " | ".join(licences) or "none",
                "class": cls,
                "flag": WHY.get(cls, ""),
            }
        )
    return sorted(rows, key=lambda r: r["name"].lower())


def counts(rows: list[dict]) -> dict[str, int]:
    out = {cls: 0 for cls in RANK}
    for r in rows:
        out[r["class"]] += 1
    return {k: v for k, v in out.items() if v}


def flagged(rows: list[dict]) -> list[dict]:
    """The flagged rows, worst class first."""
    return sorted((r for r in rows if r["flag"]), key=lambda r: (-RANK[r["class"]], r["name"].lower()))


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["name", "version", "licence", "class", "flag"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict], *, sbom_file: str, environment: str) -> str:
    """``licences.md``: counts by class, the flagged distributions with the reason, then every distribution."""
    lines = [
        "# Licences of the run's environment",
        "",
        f"{len(rows)} installed distributions ({environment}); the full bill of materials is "
        f"[`{sbom_file}`]({sbom_file}) (CycloneDX JSON).",
        "",
        "| class | distributions |",
        "|---|---|",
    ]
    lines += [f"| {cls} | {n} |" for cls, n in counts(rows).items()]
    bad = flagged(rows)
    lines += ["", f"## Flagged ({len(bad)})", ""]
    if bad:
        lines += ["| distribution | version | licence | why |", "|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['version']} | {r['licence']} | {r['flag']} |" for r in bad]
    else:
        lines.append("None: every distribution declares a permissive licence.")
    lines += ["", "## All distributions", "", "| distribution | version | licence | class |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['version']} | {r['licence']} | {r['class']} |" for r in rows]
    lines += [
        "",
        "Classes: permissive (not flagged); non-production (Business Source License 1.1); strong "
        "copyleft (GPL, AGPL); weak copyleft (LGPL, MPL, EPL); unknown (no licence, or one not recognised). "
        "Read from each distribution's metadata; this is a policy aid, not legal advice.",
    ]
    return "\n".join(lines) + "\n"
