"""Evidence cannot be re-signed: a command re-chains only files it wrote, after checking the ledger's versions,
and ``verify`` / ``release`` refuse a card or report that differs from what its own run recorded."""

from __future__ import annotations

import json

import pytest

import privtrain
from privtrain import ledger
from privtrain.artifacts import card_sections, evidence
from privtrain.audit import audit_run, report
from privtrain.cli import main
from privtrain.errors import UserError
from tests.conftest import TINY

CLAIM, FORGED = "(2.00, 1e-05)", "(0.25, 1e-05)"


def _run(tmp_path):
    return privtrain.run("dp_sgd", [*TINY, "privacy.target_epsilon=2"], output_dir=tmp_path / "run")


def _one_line_refusal(capsys, code: int, expected: int, *words: str) -> str:
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == expected, text
    assert text.count("\n") == 1, text  # one line, no traceback
    for w in words:
        assert w in text, text
    return text


def test_a_forged_card_is_never_re_signed_and_verify_and_release_refuse_it(tmp_path, ledger_path, capsys):
    result = _run(tmp_path)
    run_dir = result.output_dir
    card = run_dir / "model_card.md"
    assert CLAIM in card.read_text()
    card.write_text(card.read_text().replace(CLAIM, FORGED))  # the forger's edit
    forged = card.read_bytes()
    entries = len(ledger.open(ledger_path).entries())

    for extra in (["--shadow-models", "0"], ["--shadow-models", "0", "--no-card"]):
        code = main(["audit", str(run_dir), *extra])
        _one_line_refusal(
            capsys,
            code,
            2,
            "privtrain audit refused",
            "model_card.md (edited since the ledger recorded it)",
            "nothing was written or charged",
        )
    code = main(["verify", str(run_dir)])
    _one_line_refusal(capsys, code, 1, "1 of 8 recorded files differ", "model_card.md (edited")
    code = main(["release", str(run_dir)])
    _one_line_refusal(capsys, code, 2, "privtrain release refused", "model_card.md (edited")

    assert card.read_bytes() == forged  # nothing rewrote it...
    assert not (run_dir / "audit.json").exists() and not (run_dir / "release.json").exists()
    assert len(ledger.open(ledger_path).entries()) == entries  # ...and nothing was chained or charged


def test_an_audit_re_chains_only_what_it_wrote_each_version_naming_the_one_it_replaces(tmp_path, ledger_path, capsys):
    run_dir = _run(tmp_path).output_dir
    committed_card = (run_dir / "model_card.md").read_bytes()
    assert main(["audit", str(run_dir), "--shadow-models", "0", "--no-card"]) == 0
    book = ledger.open(ledger_path)
    first = [e for e in book.entries() if e.status == "artifacts"]
    assert len(first) == 1 and set(first[0].artifacts) == {"audit.json", "audit_roc.png"}  # not the card
    assert (run_dir / "model_card.md").read_bytes() == committed_card
    assert main(["audit", str(run_dir), "--shadow-models", "0"]) == 0  # a second audit: rewrites the card
    second = [e for e in ledger.open(ledger_path).entries() if e.status == "artifacts"][-1]
    assert set(second.artifacts) == {"audit.json", "audit_roc.png", "model_card.md"}
    assert second.detail["replaces"]["audit.json"] == first[0].artifacts["audit.json"]
    committed = next(e for e in book.entries() if e.status == "committed")
    assert second.detail["replaces"]["model_card.md"] == committed.artifacts["model_card.md"]
    text = (run_dir / "model_card.md").read_text()
    assert "## Empirical privacy audit" in text
    assert card_sections.body(text).encode() == committed_card  # the audit only added its block
    assert main(["verify", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["release", str(run_dir)]) == 0


def test_a_ledger_writer_who_re_records_a_forged_card_is_still_caught(tmp_path, ledger_path, capsys):
    """The attacker holds ledger write access and chains the forged card's hash himself, even naming the
    version it replaces: the card without the audit's block is no longer what the run recorded."""
    from privtrain.artifacts.run_dir import sha256_file

    run_dir = _run(tmp_path).output_dir
    card = run_dir / "model_card.md"
    before = sha256_file(card)
    card.write_text(card.read_text().replace(CLAIM, FORGED))
    book = ledger.open(ledger_path)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    book.record_artifacts(run_id, {"model_card.md": sha256_file(card)}, why="audit", replaces={"model_card.md": before})
    code = main(["verify", str(run_dir)])
    _one_line_refusal(capsys, code, 1, "model_card.md (its text outside the audit's section differs from what run")
    code = main(["release", str(run_dir)])
    _one_line_refusal(capsys, code, 2, "privtrain release refused")
    # hiding the forgery inside audit markers does not help either: the body must be the run's card
    text = card.read_text().replace(FORGED, CLAIM)
    text = card_sections.insert(
        text, card_sections.AUDIT_BANNER, f"**{FORGED}-differential privacy**", after_title=True
    )
    card.write_text(text)
    ledger.open(ledger_path).record_artifacts(run_id, {"model_card.md": sha256_file(card)}, why="audit")
    code = main(["verify", str(run_dir)])
    _one_line_refusal(capsys, code, 1, "without naming the version the ledger held")


def test_a_re_recording_that_skips_a_version_is_a_broken_chain(tmp_path, ledger_path):
    from privtrain.artifacts.run_dir import sha256_file

    run_dir = _run(tmp_path).output_dir
    metrics = run_dir / "metrics.json"
    metrics.write_text("{}")
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    book = ledger.open(ledger_path)
    book.record_artifacts(run_id, {"metrics.json": sha256_file(metrics)}, why="audit")  # no `replaces`
    found = evidence.problems(run_dir, evidence.recorded(book, run_id))
    assert found == [
        f"metrics.json was re-recorded by entry {book.head()[0]} (audit) without naming the version the ledger held"
    ]


def test_an_edit_while_the_audit_writes_is_not_recorded(tmp_path, ledger_path, monkeypatch):
    run_dir = _run(tmp_path).output_dir
    real_write = report.write

    def racing_write(run_dir_, audit, scores, **kw):  # someone edits the card while the audit runs
        files = real_write(run_dir_, audit, scores, **kw)
        card = run_dir_ / "model_card.md"
        card.write_text(card.read_text().replace(CLAIM, FORGED))
        return files

    monkeypatch.setattr(report, "write", racing_write)
    entries = len(ledger.open(ledger_path).entries())
    with pytest.raises(UserError, match=r"model_card\.md \(its text outside .*nothing was recorded"):
        audit_run(run_dir, shadow_models=0)
    assert len(ledger.open(ledger_path).entries()) == entries


@pytest.mark.parametrize("flag", [True, False])
def test_removing_the_audit_blocks_gives_back_the_card_byte_for_byte(flag):
    card = (
        "# Model card: dp_sgd on digits\n\n_Generated._\n\n## Privacy guarantee\n\n**(2.00, 1e-05)**\n\n"
        "## Provenance\n\n- git\n"
    )
    from tests.test_audit import _audit

    audited = report.update_card_text(card, report.card_section(_audit(flag)), report.red_flag_banner(_audit(flag)))
    assert card_sections.body(audited) == card
    again = report.update_card_text(
        audited, report.card_section(_audit(not flag)), report.red_flag_banner(_audit(not flag))
    )
    assert card_sections.body(again) == card and again.count("## Empirical privacy audit") == 1
    no_provenance = card.split("## Provenance")[0]
    assert card_sections.body(report.update_card_text(no_provenance, "x", "y")) == no_provenance


def _legacy_audit_entry(ledger_path, run_dir, files: list[str]) -> None:
    """An ``artifacts`` entry as privtrain wrote it before entries named the versions they replace."""
    from privtrain.artifacts.run_dir import hash_artifacts

    book = ledger.open(ledger_path)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    commit = next(e for e in book.entries() if e.run_id == run_id and e.status == "committed")
    with book.core.transaction():
        book.core.append(
            status="artifacts",
            run_id=run_id,
            recipe=commit.recipe,
            source=commit.source,
            source_name=commit.source_name,
            unit=commit.unit,
            epsilon=0.0,
            delta=0.0,
            artifacts=json.dumps(hash_artifacts([run_dir / f for f in files], run_dir)),
            detail=json.dumps({"why": "audit"}),
        )


def _legacy_card(card: str, section: str) -> str:
    """The card text an earlier privtrain's audit wrote (its section was inserted this way)."""
    head, tail = card.split("\n## Provenance", 1)
    return (
        head.rstrip("\n") + "\n\n" + f"{card_sections.AUDIT_SECTION[0]}\n{section}\n"
        f"{card_sections.AUDIT_SECTION[1]}" + "\n" + "\n## Provenance" + tail
    )


def test_an_earlier_privtrains_audit_still_verifies_unless_it_re_signed_an_edit(tmp_path, ledger_path, capsys):
    run_dir = _run(tmp_path).output_dir
    card = run_dir / "model_card.md"
    original = card.read_text()
    card.write_text(_legacy_card(original, "## Empirical privacy audit\n\n- old audit"))
    _legacy_audit_entry(ledger_path, run_dir, ["model_card.md"])
    assert main(["verify", str(run_dir)]) == 0  # an honest legacy audit: its block removed, the run's card
    capsys.readouterr()
    # a legacy `--no-card` audit re-signed whatever the card held: the body check still sees the forgery
    card.write_text(_legacy_card(original.replace(CLAIM, FORGED), "## Empirical privacy audit\n\n- old audit"))
    _legacy_audit_entry(ledger_path, run_dir, ["model_card.md"])
    code = main(["verify", str(run_dir)])
    _one_line_refusal(capsys, code, 1, "model_card.md (its text outside the audit's section differs")
