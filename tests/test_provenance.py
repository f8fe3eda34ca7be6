"""Provenance and consent per source, from the attacker's side: the declared facts are chained decisions, a run
outside the consented purpose, after the retention date or outside the allowed regions is refused before anything
is charged (a renamed, rescaled copy of the source included), and the card states what was declared."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import TINY
from ledger_helpers.db import tamper
from test_sources import _csv, _digits

import privtrain
from privtrain import ledger
from privtrain.errors import UserError

CONSENT = {
    "collected_by": "St Mary clinic",
    "basis": "consent form v3",
    "purposes": "diagnosis,research",
    "retain_until": "2030-06-30",
    "regions": "eu-west,eu-central",
}
OK = ["run.purpose=research", "site.region=eu-west"]


def _declare(source: str = "digits", **changes) -> ledger.Ledger:
    book = ledger.open()
    book.set_provenance(source, reason="DPIA 2026-14", **{**CONSENT, **changes})
    return book


def _refused(overrides, tmp_path, name: str = "refused") -> str:
    with pytest.raises(UserError) as info:
        privtrain.run("dp_sgd", [*TINY, *overrides], output_dir=tmp_path / name)
    message = str(info.value)
    assert "\n" not in message
    assert not (tmp_path / name).exists()  # nothing written
    return message


def _charged(book) -> list:
    return [e for e in book.entries() if e.status in ("reserved", "committed", "failed")]


def test_provenance_is_a_chained_decision_and_a_change_names_what_it_replaces(ledger_path):
    book = _declare()
    first = book.provenance("digits")
    assert first.purposes == ("diagnosis", "research") and first.regions == ("eu-west", "eu-central")
    changed = book.set_provenance("digits", purposes="research", reason="consent withdrawn for diagnosis")
    assert changed.purposes == ("research",) and changed.collected_by == "St Mary clinic"  # the rest is kept
    (a, b) = [e for e in book.entries() if e.status == "provenance"]
    assert b.detail["replaces"] == first.digest() and b.detail["replaces_entry"] == a.id
    assert b.detail["reason"] == "consent withdrawn for diagnosis" and b.user  # who and why
    with pytest.raises(UserError, match="--reason"):
        book.set_provenance("digits", purposes="teaching", reason=" ")
    with pytest.raises(UserError, match="nothing to change"):
        book.set_provenance("digits", purposes="research", reason="again")
    with pytest.raises(UserError, match="not a date"):
        book.set_provenance("digits", retain_until="30/06/2030", reason="typo")
    assert len([e for e in book.entries() if e.status == "provenance"]) == 2  # refusals wrote nothing
    assert book.verify().ok


def test_ledger_show_and_provenance_show_state_the_facts(cli, ledger_path):
    out = cli(
        "ledger",
        "provenance",
        "set",
        "digits",
        "--collected-by",
        "UCI",
        "--basis",
        "public research data",
        "--purposes",
        "research",
        "--retain-until",
        "2030-01-01",
        "--regions",
        "eu-west",
        "--reason",
        "initial",
    )
    assert "recorded in entry 1" in out.stdout
    shown = cli("ledger", "show").stdout
    assert (
        "provenance of digits: collected by UCI; basis public research data; purposes research; "
        "retain until 2030-01-01; regions eu-west" in shown
    )
    history = cli("ledger", "provenance", "show", "digits").stdout
    assert "'initial' (first declaration)" in history
    bad = cli("ledger", "provenance", "set", "digits", "--regions", "eu west", "--reason", "x")
    assert bad.returncode == 2 and "--regions has 'eu west'" in bad.stderr


def test_editing_the_provenance_in_the_file_breaks_the_chain_and_no_run_is_admitted(ledger_path, tmp_path):
    _declare(purposes="research")
    entry = next(e for e in ledger.open().entries() if e.status == "provenance")
    widened = json.dumps({**entry.detail, "purposes": ["research", "marketing"]})
    tamper(ledger_path, "UPDATE entries SET detail = ? WHERE id = ?", params=(widened, entry.id))
    book = ledger.open()
    report = book.verify()
    assert not report.ok and report.first_bad == entry.id
    assert book.provenance("digits").purposes == ("research", "marketing")  # what the attacker wanted read
    message = _refused(["run.purpose=marketing", "site.region=eu-west"], tmp_path)
    assert "fails verification" in message and "Nothing was charged" in message
    assert not _charged(ledger.open())


def test_a_purpose_outside_consent_is_refused_in_one_line_and_nothing_is_written(ledger_path, tmp_path):
    book = _declare()
    before = [e.hash for e in book.entries()]
    message = _refused(["run.purpose=marketing", "site.region=eu-west"], tmp_path)
    assert "'provenance of digits'" in message and "a purpose within consent (diagnosis, research)" in message
    assert "run.purpose=marketing" in message and "Nothing was read or charged" in message
    missing = _refused(["site.region=eu-west"], tmp_path)  # a source that declares purposes needs the run's
    assert "run.purpose is not set" in missing
    assert [e.hash for e in ledger.open().entries()] == before  # not one entry: nothing read, charged or recorded


def test_a_run_after_the_retention_date_is_refused(ledger_path, tmp_path):
    book = _declare(retain_until="2020-01-31")
    before = [e.hash for e in book.entries()]
    message = _refused(OK, tmp_path)
    assert "a start on or before the retention date 2020-01-31" in message and "the run starts on 20" in message
    assert [e.hash for e in ledger.open().entries()] == before


def test_a_run_outside_the_allowed_regions_is_refused_and_a_policy_only_narrows_them(ledger_path, tmp_path):
    book = _declare()
    before = [e.hash for e in book.entries()]
    assert "processing in eu-west, eu-central, but site.region=us-east" in _refused(
        ["run.purpose=research", "site.region=us-east"], tmp_path
    )
    assert "site.region is not set" in _refused(["run.purpose=research"], tmp_path)
    (ledger_path.parent / "policy.yaml").write_text(
        textwrap.dedent("""
        version: 1
        sources:
          digits: {regions: [eu-central, us-east]}   # us-east is not consented: the intersection is eu-central
        rules: []
    """)
    )
    assert "processing in eu-central, but site.region=eu-west" in _refused(OK, tmp_path)
    assert "but site.region=us-east" in _refused(["run.purpose=research", "site.region=us-east"], tmp_path)
    assert not _charged(ledger.open()) and len(ledger.open().entries()) == len(before)
    done = privtrain.run(
        "dp_sgd", [*TINY, "run.purpose=research", "site.region=eu-central"], output_dir=tmp_path / "ok"
    )
    governance = done.ledger["governance"]
    assert governance["allowed_regions"] == ["eu-central"] and governance["region"] == "eu-central"


def test_a_policy_can_require_provenance(ledger_path, tmp_path):
    (ledger_path.parent / "policy.yaml").write_text(
        textwrap.dedent("""
        version: 1
        rules:
          - name: consented-data
            require_provenance: true
    """)
    )
    message = _refused(OK, tmp_path)
    assert (
        "'consented-data' (every source)" in message and "declared provenance (collector, basis, purposes)" in message
    )
    assert "no who collected it, no its legal basis or consent, no its purposes" in message
    _declare(regions="eu-west")
    privtrain.run("dp_sgd", [*TINY, *OK], output_dir=tmp_path / "ok")


def test_the_card_and_run_json_state_the_provenance_and_the_purpose(ledger_path, tmp_path):
    _declare()
    run = privtrain.run("dp_sgd", [*TINY, *OK], output_dir=tmp_path / "run")
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "## Data provenance and consent" in card
    assert "Purpose of this run: research; executed in: eu-west" in card
    assert (
        "collected by St Mary clinic; basis: consent form v3; purposes: diagnosis, research; retain until: "
        "2030-06-30; regions: eu-west, eu-central" in card
    )
    record = json.loads((tmp_path / "run" / "run.json").read_text())["ledger"]["governance"]
    assert record["purpose"] == "research" and record["provenance"]["digits"]["basis"] == "consent form v3"
    assert record["provenance"]["digits"]["sha256"] == ledger.open().provenance("digits").digest()
    assert run.ledger["governance"] == record
    from privtrain.artifacts.run_dir import hash_artifacts
    from privtrain.artifacts.verify import recorded_hashes

    _, hashes, _ = recorded_hashes(tmp_path / "run")  # the card and run.json are chained like every run file
    assert {"model_card.md", "run.json"} <= set(hashes)
    now = hash_artifacts([tmp_path / "run" / n for n in ("model_card.md", "run.json")], tmp_path / "run")
    assert all(hashes[n] == h for n, h in now.items())


def rescaled_copy(tmp_path) -> list[str]:
    """The overrides of a shuffled copy of digits under other column names, rescaled to [0, 1] (copy.csv)."""
    copy = _digits().sample(frac=1.0, random_state=1)
    pixels = [c for c in copy.columns if c != "target"]
    copy[pixels] = copy[pixels] / 16.0  # rescaled to [0, 1]
    copy = copy.rename(columns={c: f"px{i}" for i, c in enumerate(pixels)})
    copy.to_csv(tmp_path / "copy.csv", index=False)
    schema = (
        ", ".join(f"px{i}: {{min: 0, max: 1}}" for i in range(len(pixels)))
        + ", target: {categories: [0,1,2,3,4,5,6,7,8,9]}"
    )
    return [
        "dataset=csv",
        f"dataset.path={tmp_path / 'copy.csv'}",
        "dataset.target=target",
        f"dataset.schema={{{schema}}}",
        f"dataset.public_n={len(copy)}",
    ]


def test_a_renamed_rescaled_copy_of_the_source_gets_the_sources_consent_checks(ledger_path, tmp_path):
    _declare("scans", regions="eu-west")
    privtrain.run(
        "dp_sgd",
        [*TINY, *_csv(_digits(), tmp_path / "scans.csv"), "dataset.source=scans", *OK],
        output_dir=tmp_path / "first",
    )
    overrides = rescaled_copy(tmp_path)
    book = ledger.open()
    charged = len(_charged(book))
    message = _refused([*overrides, "run.purpose=marketing", "site.region=eu-west"], tmp_path)
    assert "refuses this run on source 'scans' (charged because" in message and "run.purpose=marketing" in message
    assert "Nothing was charged" in message
    message = _refused([*overrides, "run.purpose=research", "site.region=us-east"], tmp_path)
    assert "on source 'scans' (charged because" in message and "site.region=us-east" in message
    assert len(_charged(ledger.open())) == charged  # the copy's refusals reserved nothing


def test_policy_explain_shows_the_class_why_and_each_provenance_finding(cli, ledger_path):
    (ledger_path.parent / "policy.yaml").write_text(
        textwrap.dedent("""
        version: 1
        sources:
          digits: {tags: [health]}
        rules:
          - name: consented-data
            require_provenance: true
        risk:
          classes:
            high: {when: {purposes: [diagnosis]}, controls: {max_epsilon: 3}}
            low: {when: {tags: [health]}}
    """)
    )
    _declare(retain_until="2020-01-31")
    out = cli("policy", "explain", "dp_sgd", "run.purpose=diagnosis", "site.region=us-east")
    assert out.returncode == 1, out.stderr
    text = out.stdout
    assert "purpose diagnosis, region us-east; source provenance: collected by St Mary clinic" in text
    assert "risk class high (purpose diagnosis): ε ≤ 3 per run" in text  # the class, and why
    assert "pass  rule 'provenance of digits'" in text and "a purpose within consent (diagnosis, research)" in text
    assert "FAIL  rule 'provenance of digits'" in text and "retention date 2020-01-31" in text
    assert "processing in eu-west, eu-central: site.region=us-east" in text
    assert "pass  rule 'consented-data' (every source): declared provenance" in text
    assert "verdict: refused by rule 'provenance of digits'" in text
    low = cli("policy", "explain", "dp_sgd", "run.purpose=research", "site.region=eu-west").stdout
    assert "risk class low (tag health)" in low
