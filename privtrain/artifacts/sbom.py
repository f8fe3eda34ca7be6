"""The environment's bill of materials: ``sbom.cdx.json`` (CycloneDX) and ``licences.md`` / ``licences.csv``.

    privtrain sbom [--output DIR]

Every run writes these files into its output directory (the run protocol in :mod:`privtrain.api`),
and the ledger hashes them with the run's other artifacts.

How the SBOM is made: ``cyclonedx-py environment`` (the ``cyclonedx-bom`` package's documented
command line), run with this interpreter on its own ``sys.path``, in reproducible mode (no timestamp
or serial number, so one environment always gives the same bytes) and without its JSON-schema
validation (that alone takes about 11 s; the tests validate a BOM once). Two additions:

- a distribution whose metadata has only a free-text ``License`` field (``Apache 2.0``), which
  cyclonedx leaves out unless it gathers licence texts, gets that name as a declared licence;
- local ``file://`` references (an editable install's checkout) are dropped: the SBOM names no path
  of the machine that made it.

Cache: building the SBOM takes about 0.75 s, so it is cached per environment in
``$PRIVTRAIN_CACHE`` (default ``$XDG_CACHE_HOME/privtrain``, ``~/.cache/privtrain``) under
``sbom/<key>.cdx.json``, where the key is a SHA-256 over the interpreter's version and every
installed distribution's name and version. Installing, removing or upgrading anything changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from privtrain.artifacts import licences
from privtrain.errors import UserError

SBOM = "sbom.cdx.json"
LICENCES_MD = "licences.md"
LICENCES_CSV = "licences.csv"


@dataclass
class EnvironmentBom:
    """The SBOM of the running environment and its licence rows."""

    text: str  # the CycloneDX JSON
    rows: list[dict]
    key: str
    cached: bool
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict:
        """Plain values for the model card: the files, counts by class and the flagged distributions."""
        bad = licences.flagged(self.rows)
        return {
            "sbom": SBOM,
            "licences": LICENCES_MD,
            "csv": LICENCES_CSV,
            "n": len(self.rows),
            "counts": licences.counts(self.rows),
            "flagged": [
                {
                    "name": r["name"],
                    "version": r["version"],
                    "licence": r["licence"],
                    "class": r["class"],
                    "flag": r["flag"],
                }
                for r in bad
            ],
        }

    def write(self, out: Path) -> list[Path]:
        """Write the SBOM and both licence files into ``out``; return them."""
        out.mkdir(parents=True, exist_ok=True)
        env = f"Python {platform.python_version()}, environment key {self.key[:12]}"
        self.files = [out / SBOM, out / LICENCES_MD, out / LICENCES_CSV]
        self.files[0].write_text(self.text)
        self.files[1].write_text(licences.to_markdown(self.rows, sbom_file=SBOM, environment=env))
        self.files[2].write_text(licences.to_csv(self.rows))
        return self.files


def environment_key() -> str:
    """SHA-256 over the interpreter's version and every installed distribution's name and version."""
    dists = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions()})
    return hashlib.sha256("\n".join([sys.version, *dists]).encode()).hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("PRIVTRAIN_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "privtrain"


def environment_bom(*, use_cache: bool = True) -> EnvironmentBom:
    """The SBOM of the running environment, from the cache when this environment has one.

    Raises:
        UserError: ``cyclonedx-bom`` is missing or failed (before any charge: the API asks first).
    """
    key = environment_key()
    cached_file = cache_dir() / "sbom" / f"{key}.cdx.json"
    if use_cache and cached_file.is_file():
        text, cached = cached_file.read_text(), True
    else:
        text, cached = _build(), False
        if use_cache:
            try:
                cached_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached_file.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(text)
                tmp.replace(cached_file)  # atomic: parallel sweep jobs never read half a file
            except OSError:
                pass  # a read-only cache only costs time
    return EnvironmentBom(text, licences.summarize(json.loads(text)), key, cached)


def _build() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / SBOM
        cmd = [
            sys.executable,
            "-m",
            "cyclonedx_py",
            "environment",
            "--of",
            "JSON",
            "--output-reproducible",
            "--no-validate",
            "-o",
            str(target),
        ]
        try:
            done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(
                f"sbom: cyclonedx-py failed ({type(exc).__name__}); install cyclonedx-bom (pip install cyclonedx-bom)."
            ) from None
        if done.returncode != 0 or not target.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(
                f"sbom: cyclonedx-py environment failed ({last}); install cyclonedx-bom (pip install cyclonedx-bom)."
            )
        bom = json.loads(target.read_text())
    return json.dumps(_complete(bom), indent=2, sort_keys=True) + "\n"


def _complete(bom: dict) -> dict:
    """Add free-text licence names cyclonedx left out; drop local file:// references."""
    declared = {}
    for dist in metadata.distributions():
        text = (dist.metadata.get("License") or "").strip()  # type: ignore[attr-defined]  # an email.message.Message
        if text and "\n" not in text and len(text) <= 80:  # a name, not a licence's full text
            declared[(dist.metadata["Name"] or "").lower()] = text
    for c in bom.get("components", []):
        if not c.get("licenses") and c["name"].lower() in declared:
            c["licenses"] = [{"license": {"name": declared[c["name"].lower()], "acknowledgement": "declared"}}]
        refs = [r for r in c.get("externalReferences", []) if not str(r.get("url", "")).startswith("file:")]
        if refs:
            c["externalReferences"] = refs
        else:
            c.pop("externalReferences", None)
    return bom


# --- privtrain sbom ----------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser(
        "sbom",
        help="write the environment's CycloneDX SBOM and licence summary",
        description=f"Write {SBOM}, {LICENCES_MD} and {LICENCES_CSV} for the current Python "
        "environment (what every run records) and print the licence summary.",
    )
    p.add_argument("--output", "-o", default=".", help="folder for the files (default: the current one)")
    p.add_argument("--no-cache", action="store_true", help="rebuild the SBOM even if this environment has one cached")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    bom = environment_bom(use_cache=not args.no_cache)
    files = bom.write(Path(args.output))
    print(render_summary(bom.summary(), files))
    return 0


def render_summary(summary: dict, files: list[Path]) -> str:
    """One screen: counts by licence class, then the flagged distributions."""
    lines = [
        f"privtrain sbom: {summary['n']} distributions; "
        + ", ".join(f"{n} {cls}" for cls, n in summary["counts"].items())
    ]
    if summary["flagged"]:
        lines.append(f"flagged ({len(summary['flagged'])}):")
        lines += [f"  {f['name']} {f['version']}: {f['licence']} ({f['class']})" for f in summary["flagged"]]
    else:
        lines.append("flagged: none")
    lines.append("wrote " + ", ".join(str(f) for f in files))
    return "\n".join(lines)
