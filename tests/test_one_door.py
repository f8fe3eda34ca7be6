"""The ledger's one door: every charge, the audit's shadow models included, is built from a run request,
judged by the policy inside admission, and checked against the tight (PLD) figure of its events."""

from __future__ import annotations

import textwrap

import dp_accounting
import pytest

import privtrain
from privtrain import ledger, policy
from privtrain.errors import UserError
from privtrain.privacy import events as ev
from privtrain.sources import Source

FAST = ["recipe.epochs=1", "recipe.progress=false"]


def _policy_file(ledger_path, text: str):
    path = ledger_path.parent / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _request(book, eps_claimed: float, events, *, recipe="dp_sgd", source="patients", policy_path=None, delta=1e-5):
    access = ledger.Access(
        Source(source, source, "declared"), "ab" * 32, (ledger.Mechanism("example", tuple(events), delta, eps_claimed),)
    )
    rules = None
    if policy_path is not None:
        facts = policy.RunFacts(recipe, source, (), True, ("example",), None, delta)
        rules = policy.evaluate(book, facts, str(policy_path))
    return ledger.RunRequest.of(recipe, access, config_hash="cfg", ledger=ledger.LedgerSettings(), policy=rules)


def test_the_per_run_limit_is_checked_against_the_pld_epsilon_not_the_recipes_claim(ledger_path):
    """A mechanism whose own accountant under-reports (here: claims ε=1) is judged by its PLD ε."""
    path = _policy_file(
        ledger_path,
        """
        version: 1
        rules:
          - name: cap
            max_epsilon_per_run: 2
        """,
    )
    events = (dp_accounting.GaussianDpEvent(1.5),)
    true_eps = ev.epsilon_pld(list(events), 1e-5)
    assert true_eps > 2.5  # the claim below is a lie the policy must see through
    book = ledger.open(ledger_path)
    with pytest.raises(UserError, match=rf"ε ≤ 2 per run.*planned ε={true_eps:.3g}"):
        with book.charging(_request(book, 1.0, events, policy_path=path)):
            pytest.fail("admitted")
    assert book.entries() == []  # nothing charged, not even the policy entry
    honest = (dp_accounting.GaussianDpEvent(4.0),)
    with book.charging(_request(book, 0.5, honest, policy_path=path)) as run:  # under-claimed, within the cap
        entries = run.commit(honest, epsilon=0.5)
    pld = ev.epsilon_pld(list(honest), 1e-5)
    assert pld > 0.5
    assert run.reservation.epsilon == pytest.approx(pld, rel=1e-6)  # the reservation records the PLD figure
    assert entries[0].epsilon == pytest.approx(pld, rel=1e-6)  # and so does the commit, whatever the recipe says
    assert {e.status for e in book.entries()} == {"policy", "reserved", "committed"}  # recorded in the door


def test_a_policy_refusal_writes_nothing_and_the_policy_hash_is_in_every_admitted_entry(ledger_path):
    path = _policy_file(
        ledger_path,
        """
        version: 1
        rules:
          - name: only-dp-sgd
            recipes: [dp_sgd]
        """,
    )
    book = ledger.open(ledger_path)
    events = (dp_accounting.GaussianDpEvent(4.0),)
    with pytest.raises(UserError, match="only-dp-sgd"):
        book.charging(_request(book, 1.0, events, recipe="synthetic", policy_path=path)).__enter__()
    assert book.entries() == []
    with book.charging(_request(book, 1.0, events, policy_path=path)) as run:
        run.commit(events)
    sha = policy.load(path).sha256
    runs = [e for e in book.entries() if e.status in ("reserved", "committed")]
    assert runs and all(e.detail.get("policy") == sha for e in runs)


@pytest.mark.slow
def test_the_audits_shadow_charge_goes_through_the_policy(tmp_path, ledger_path, monkeypatch):
    """The second door, closed: under `recipes: [dp_sgd]` and a per-run cap, the audit's charged shadow
    models (recipe audit-shadow, ε ≈ 4.6 for K=4 shadows of an ε=2 run) are refused, nothing charged."""
    monkeypatch.chdir(tmp_path)
    _policy_file(
        ledger_path,
        """
        version: 1
        rules:
          - name: cap
            max_epsilon_per_run: 3.5
            recipes: [dp_sgd]
        """,
    )
    result = privtrain.run("dp_sgd", ["privacy.target_epsilon=2", *FAST], output_dir=tmp_path / "run")
    before = ledger.open(ledger_path).entries()
    with pytest.raises(UserError, match=r"rule 'cap'.*(recipes dp_sgd|ε ≤ 3.5 per run)"):
        privtrain.audit.audit_run(result.output_dir, shadow_models=4, shadow_data="charged")
    after = ledger.open(ledger_path).entries()
    assert [e.id for e in after] == [e.id for e in before]  # the refusal wrote nothing
    assert all(e.recipe != "audit-shadow" for e in after)
