"""The environment's SBOM (CycloneDX) and licence policy: classes, flags, cache, ``privtrain sbom``."""

from __future__ import annotations

import json

import pytest

from privtrain.artifacts import licences, sbom
from privtrain.artifacts.licences import NON_PRODUCTION, PERMISSIVE, STRONG, UNKNOWN, WEAK


@pytest.mark.parametrize(
    "text, expected",
    [
        ("MIT", PERMISSIVE),
        ("BSD-3-Clause", PERMISSIVE),
        ("Apache Software License", PERMISSIVE),
        ("BSL-1.0", PERMISSIVE),  # Boost, not the Business Source License
        ("Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-2-Clause AND BSL-1.0 AND MIT", PERMISSIVE),
        ("BUSL-1.1", NON_PRODUCTION),
        ("Business Source License 1.1", NON_PRODUCTION),
        ("GPL-3.0-only", STRONG),
        ("GNU General Public License v3 (GPLv3)", STRONG),
        ("AGPL-3.0-or-later", STRONG),
        ("LGPL-3.0-only", WEAK),
        ("GNU Lesser General Public License v2 or later (LGPLv2+)", WEAK),
        ("MPL-2.0 AND MIT", WEAK),
        ("GPL-2.0-only OR MIT", PERMISSIVE),  # a choice: the permissive one can be taken
        ("MIT AND GPL-2.0-only", STRONG),
        ("Proprietary", UNKNOWN),
        ("", UNKNOWN),
    ],
)
def test_licence_classes(text, expected):
    assert licences.classify([text]) == expected


def test_several_declared_licences_take_the_most_restrictive_known_one():
    assert licences.classify(["MIT", "GPL-3.0-only"]) == STRONG
    assert licences.classify(["Apache-2.0", "Some odd classifier"]) == PERMISSIVE
    assert licences.classify([]) == UNKNOWN


def test_summary_flags_every_class_but_permissive():
    bom = {
        "components": [
            {"name": "sdv", "version": "2.0.0", "licenses": [{"license": {"id": "BUSL-1.1"}}]},
            {"name": "lib", "version": "1", "licenses": [{"expression": "GPL-2.0-or-later"}]},
            {
                "name": "ok",
                "version": "1",
                "licenses": [{"license": {"name": "License :: OSI Approved :: MIT License"}}],
            },
            {"name": "mystery", "version": "1"},
        ]
    }
    rows = licences.summarize(bom)
    assert [r["name"] for r in licences.flagged(rows)] == ["sdv", "lib", "mystery"]
    assert "non-production use only" in rows[[r["name"] for r in rows].index("sdv")]["flag"]
    assert licences.counts(rows) == {PERMISSIVE: 1, UNKNOWN: 1, STRONG: 1, NON_PRODUCTION: 1}
    md = licences.to_markdown(rows, sbom_file="sbom.cdx.json", environment="test")
    assert "| sdv | 2.0.0 | BUSL-1.1 | Business Source License 1.1: non-production use only" in md
    assert "| ok | 1 | MIT License | permissive |" in md


def test_environment_bom_names_sdv_as_non_production_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVTRAIN_CACHE", str(tmp_path / "cache"))
    cold = sbom.environment_bom()
    warm = sbom.environment_bom()
    assert (cold.cached, warm.cached) == (False, True)
    assert cold.text == warm.text  # reproducible mode: the same environment, the same bytes
    assert list((tmp_path / "cache" / "sbom").glob("*.cdx.json"))
    bom = json.loads(cold.text)
    assert bom["bomFormat"] == "CycloneDX"
    names = {c["name"].lower(): c for c in bom["components"]}
    assert {"torch", "opacus", "privtrain"} <= set(names)
    flagged = {f["name"].lower(): f for f in cold.summary()["flagged"]}
    for name in ("sdv", "rdt", "copulas", "ctgan", "deepecho"):
        assert flagged[name]["class"] == NON_PRODUCTION
    assert "file://" not in cold.text  # an editable install's checkout path is not recorded
    files = cold.write(tmp_path / "out")
    assert [f.name for f in files] == ["sbom.cdx.json", "licences.md", "licences.csv"]
    assert "| sdv |" in files[1].read_text()


@pytest.mark.slow
def test_sbom_validates_against_the_cyclonedx_schema(tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = sbom.environment_bom(use_cache=False).text
    spec = SchemaVersion.from_version(json.loads(text)["specVersion"])
    assert JsonStrictValidator(spec).validate_str(text) is None


def test_privtrain_sbom_command(cli, tmp_path):
    done = cli("sbom", "--output", "bom")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bom" / "sbom.cdx.json").is_file() and (tmp_path / "bom" / "licences.md").is_file()
    assert "non-production" in done.stdout and "sdv 2.0" in done.stdout
    assert done.stdout.startswith("privtrain sbom: ") and "flagged (" in done.stdout
