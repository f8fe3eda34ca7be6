"""Accepting damage never launders tampering: an attacker who lowers the ledger's record of spend, then
accepts the damage, still cannot get a run admitted past the budget. Each test fills a budget, tampers
as an attacker with write access would, accepts the damage, and tries one more run."""

from __future__ import annotations

import json
import math

import pytest
from ledger_helpers import FP, charge, cli, gaussian, run
from ledger_helpers.db import execute, query, tamper

from privtrain import ledger
from privtrain.errors import BudgetExceeded, UserError
from privtrain.ledger import floors, integrity, store
from privtrain.privacy import events as ev

SIGMA, BUDGET, DELTA = 3.0, 6.0, 1e-5
TINY = (gaussian(1000.0)[0],)  # what an attacker writes in place of a run's real events
KEY = "team-secret-kept-in-a-vault"


def _full(path) -> tuple[int, float]:
    """A budget filled up to the filter's refusal: (runs admitted, the filter's ε then)."""
    book = ledger.open(path)
    book.warm_cache = False
    book.set_budget(FP, "example", BUDGET, DELTA)
    n = 0
    while True:
        try:
            run(book, charge(f"r{n}", gaussian(SIGMA)))
        except BudgetExceeded:
            break
        n += 1
    spent = book.filter_epsilon(FP)
    book.close()
    assert n >= 2 and spent > 0
    return n, spent


def _lower_curves(path) -> None:
    """The tester's attack: every run's chained RDP curve set to zero (events and hashes left alone)."""
    zero = json.dumps([0.0] * 17)
    tamper(path, "UPDATE entries SET rdp = ? WHERE status IN ('reserved', 'committed', 'failed')", params=(zero,))


def _lower_events(path) -> None:
    """A stronger attack: the events, the curves and ε of every run replaced by a near-free mechanism."""
    text = ev.dumps(list(TINY))
    tamper(
        path,
        "UPDATE entries SET events = ?, rdp = ?, epsilon = 0.001 WHERE status IN ('reserved', 'committed', 'failed')",
        params=(text, floors.curve_json(text)),
    )


def _rechain(path) -> None:
    """A capable attacker: recompute every hash and the head record after editing."""
    prev = store.GENESIS
    for r in query(path, "SELECT * FROM entries ORDER BY id"):
        r["prev_hash"] = prev
        r["hash"] = store.entry_hash(r)
        execute(path, "UPDATE entries SET prev_hash=?, hash=? WHERE id=?", params=(r["prev_hash"], r["hash"], r["id"]))
        prev = r["hash"]
    execute(path, "UPDATE meta SET value=? WHERE key='head_hash'", params=(prev,))


def _forget_this_machine(path) -> None:
    """Accept on another machine: no anchor, no record of the spend."""
    anchor = integrity.anchor_file(path)
    anchor.unlink()
    anchor.with_name(anchor.stem + ".floors.json").unlink()


def _refused_past_the_budget(path, spent_before: float) -> ledger.Ledger:
    book = ledger.open(path)
    assert book.verify().ok
    assert book.filter_epsilon(FP) >= spent_before * (1 - 1e-9)
    with pytest.raises(BudgetExceeded):
        run(book, charge("past-the-budget", gaussian(SIGMA)))
    return book


@pytest.mark.parametrize("signed", [False, True], ids=["no key", "with PRIVTRAIN_LEDGER_KEY"])
def test_lowered_curves_then_accepted_damage_admit_nothing_past_the_budget(ledger_at, monkeypatch, signed):
    if signed:
        monkeypatch.setenv(integrity.KEY_ENV, KEY)
    path = ledger_at
    _, spent = _full(path)
    _lower_curves(path)
    _forget_this_machine(path)  # the curves are restored from the events: no record of the spend is needed
    out = cli("accept-damage", "--reason", "tester", path=path)
    assert out.returncode == 0, out.stderr
    assert "edited RDP curve(s) restored from their events" in out.stdout
    book = _refused_past_the_budget(path, spent)
    accepted = next(e for e in book.entries() if e.status == "accepted")
    if signed:  # the decision is a signed, chained entry; without the key it verifies on the chain alone
        row = next(r for r in book._backend.chain_rows() if r["id"] == accepted.id)
        assert row["mac"] == integrity.signer(KEY.encode())(row["hash"])
        monkeypatch.delenv(integrity.KEY_ENV)
        _refused_past_the_budget(path, spent)
    assert book.spent(FP) > 0 and book.remaining(FP) < 1.0


def test_edited_events_are_bounded_by_what_this_machine_last_verified(ledger_at):
    path = ledger_at
    _, spent = _full(path)
    _lower_events(path)
    out = cli("accept-damage", "--reason", "tester", path=path)
    assert out.returncode == 0, out.stderr
    assert "bounded by the spend this machine verified" in out.stdout
    _refused_past_the_budget(path, spent)


def test_a_whole_chain_rewrite_caught_by_the_anchor_is_bounded_too(ledger_at):
    path = ledger_at
    _, spent = _full(path)
    _lower_events(path)
    _rechain(path)
    assert "not the one this machine saw" in ledger.open(path).verify().problem
    assert cli("accept-damage", "--reason", "tester", path=path).returncode == 0
    _refused_past_the_budget(path, spent)


def test_deleted_charges_are_bounded_too(ledger_at):
    path = ledger_at
    _, spent = _full(path)
    tamper(path, "DELETE FROM entries WHERE run_id IN ('r0', 'r1')")
    assert cli("accept-damage", "--reason", "tester", path=path).returncode == 0
    _refused_past_the_budget(path, spent)


def test_unbounded_damage_is_refused_unless_every_budget_is_exhausted(ledger_at):
    path = ledger_at
    _full(path)
    _lower_events(path)
    _forget_this_machine(path)
    before = query(path, "SELECT id FROM entries")
    out = cli("accept-damage", "--reason", "tester", path=path)
    assert out.returncode == 2 and "cannot be bounded" in out.stderr and "--exhaust-budgets" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert query(path, "SELECT id FROM entries") == before  # nothing recorded
    out = cli("accept-damage", "--reason", "tester", "--exhaust-budgets", path=path)
    assert out.returncode == 0 and "every budget now counts as spent" in out.stdout
    book = ledger.open(path)
    assert book.verify().ok and math.isinf(book.filter_epsilon(FP))
    with pytest.raises(BudgetExceeded):
        run(book, charge("tiny", gaussian(100.0)))


def test_an_edited_budget_is_not_raised_by_accepting(ledger_at):
    path = ledger_at
    _full(path)
    tamper(path, "UPDATE entries SET epsilon = 1000 WHERE status = 'budget'")
    assert ledger.open(path).budget(FP).epsilon == 1000
    assert cli("accept-damage", "--reason", "tester", path=path).returncode == 0
    book = ledger.open(path)
    assert book.verify().ok and book.budget(FP).epsilon == BUDGET
    with pytest.raises(BudgetExceeded):
        run(book, charge("past-the-budget", gaussian(SIGMA)))


def test_a_second_acceptance_cannot_undo_the_first(ledger_at):
    path = ledger_at
    _, spent = _full(path)
    _lower_curves(path)
    assert cli("accept-damage", "--reason", "first", path=path).returncode == 0
    book = _refused_past_the_budget(path, spent)
    book.close()
    tamper(path, "UPDATE entries SET rdp = ? WHERE recipe = 'accept-damage'", params=(json.dumps([0.0] * 17),))
    assert cli("accept-damage", "--reason", "second", path=path).returncode == 0
    _refused_past_the_budget(path, spent)


def test_a_signed_ledger_accepts_damage_only_with_its_key(ledger_at, monkeypatch):
    path = ledger_at
    monkeypatch.setenv(integrity.KEY_ENV, KEY)
    _full(path)
    _lower_curves(path)
    monkeypatch.delenv(integrity.KEY_ENV)
    with pytest.raises(UserError, match="is signed: accepting its damage is a signed decision"):
        ledger.open(path).accept_damage("no key")


def test_a_damaged_ledger_that_lost_no_charge_is_accepted_with_nothing_added(tmp_path):
    path = tmp_path / "l.db"
    _full(path)
    tamper(path, "UPDATE entries SET source_name = 'renamed' WHERE status = 'budget'")
    book = ledger.open(path)
    before = book.filter_epsilon(FP)
    entry = book.accept_damage("a typo fixed by hand")
    assert entry.detail["compensated"] == [] and entry.detail["budgets_kept"] == []
    assert ledger.open(path).filter_epsilon(FP) == pytest.approx(before)
