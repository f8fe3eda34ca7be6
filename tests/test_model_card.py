"""The model card a reviewer reads: each section's content for each recipe, and what must never appear."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import TINY

import privtrain
from privtrain.artifacts import card_text, model_card
from privtrain.result import Guarantee

SBOM_FILES = ("sbom.cdx.json", "licences.md", "licences.csv")
OPACUS = ("Opacus secure_mode", "the mechanism does not depend on them")


def _run(recipe: str, overrides: list[str], out: Path, ledger_path: Path):
    return privtrain.run(recipe, [*overrides, f"ledger.path={ledger_path}"], output_dir=out)


def _card(result) -> str:
    return (result.output_dir / "model_card.md").read_text()


def _assert_reviewable(card: str, result, ledger_path: Path) -> None:
    """What no card may show, and the SBOM every card links."""
    for path in (result.output_dir, ledger_path, ledger_path.parent, Path.home()):
        assert str(path) not in card
    assert not re.search(r"(?<![\w.:/~-])(/[\w.-]+){2,}", card), "an absolute path"
    assert "None" not in card and "remaining: " not in card
    assert not re.search(r"\d\.\d{6,}", card), "an unrounded float"
    assert '{"type"' not in card, "a raw JSON mechanism"
    assert f"Ledger `{ledger_path.name}`" in card
    for name in SBOM_FILES:
        assert (result.output_dir / name).is_file()
    assert "[`sbom.cdx.json`](sbom.cdx.json)" in card and "[`licences.md`](licences.md)" in card
    assert "sdv 2.0.0: BUSL-1.1: Business Source License 1.1: non-production use only" in card
    hashed = _hashed_artifacts(result, ledger_path)
    assert set(SBOM_FILES) | {"model_card.md"} <= set(hashed)


def _hashed_artifacts(result, ledger_path: Path) -> dict:
    from privtrain.artifacts.verify import recorded_hashes

    _, hashes, _ = recorded_hashes(result.output_dir)
    return hashes


def _section(card: str, title: str) -> str:
    assert f"\n## {title}\n" in card, f"no section {title!r}"
    return card.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


# --- end to end, one per recipe ---------------------------------------------------------------------------


def test_dp_sgd_card(tmp_path, ledger_path):
    result = _run(
        "dp_sgd",
        [*TINY, "privacy.target_epsilon=3", "ledger.default_budget.epsilon=8", "ledger.default_budget.delta=1e-5"],
        tmp_path / "r",
        ledger_path,
    )
    card = _card(result)
    _assert_reviewable(card, result, ledger_path)
    dp = json.loads((result.output_dir / "metrics.json").read_text())["dp"]
    assert "## Intended use" in card and "`dp_sgd` recipe" in card
    source = _section(card, "Data source")
    fingerprint = result.dataset["fingerprint"]
    assert f"fingerprint: `{fingerprint[:12]}`" in source and f"full: `{fingerprint}`" in source
    assert "1,465 for training" in source
    guarantee = _section(card, "Privacy guarantee")
    assert f"**({card_text.eps(result.guarantee.epsilon)}, 1e-05)-differential privacy per example" in guarantee
    mechanism = guarantee.split("### Mechanism", 1)[1]
    assert f"clips each example's gradient to L2 norm {dp['max_grad_norm']:.4g} (the clip norm)" in mechanism
    assert f"(noise multiplier {dp['noise_multiplier']:.4g})" in mechanism
    # the batch over the public training rows (and the divisor): no longer q times the rows read (244.2)
    assert f"sampling rate {dp['sample_rate']:.4g}" in mechanism and "expected batch size 256" in mechanism
    assert f"The run took {dp['steps']} steps" in mechanism and "learning rate 0.05" in mechanism
    assert f"the {dp['accountant']} accountant composed them at δ = 1e-05" in mechanism
    assert all(o in _section(card, "What the guarantee does not cover") for o in OPACUS)
    ledger = _section(card, "Privacy ledger")
    charge = result.ledger["charges"][0]
    assert f"spent ε = {card_text.eps(charge['spent_after_run'])} (PLD estimate" in ledger
    assert (
        f"Budget: ε = 8.00 at δ = 1e-05; the admission filter certifies ε = "
        f"{card_text.eps(charge['filter_after_run'])} spent, so ε = {card_text.eps(charge['remaining'])} remains"
        in ledger
    )
    assert "adaptively" in ledger  # the filter explained
    assert f"- accuracy: {result.metrics['accuracy']:.4f}" in _section(card, "Metrics (held-out split)")
    provenance = _section(card, "Provenance")
    assert "privtrain 0.1.0, git commit" in provenance and "- opacus: " in provenance
    assert "no personal data was found" in _section(card, "Personal data (PII)")
    for absent in ("## Policy", "## Empirical privacy audit"):
        assert absent not in card


def test_the_policy_evaluated_and_the_sources_tags_are_on_the_card(tmp_path, ledger_path):
    (tmp_path / "policy.yaml").write_text(
        "version: 1\nsources:\n  digits: {tags: [health]}\nrules:\n"
        "  - name: health-limits\n    when: {tags: [health]}\n"
        "    max_epsilon_per_run: 4\n"
    )
    result = _run(
        "dp_sgd", [*TINY, f"ledger.policy={tmp_path / 'policy.yaml'}", "dataset.tags=[eu]"], tmp_path / "r", ledger_path
    )
    card = _card(result)
    _assert_reviewable(card, result, ledger_path)
    assert "- tags: eu, health" in _section(card, "Data source")
    policy = _section(card, "Policy")
    assert policy.strip().startswith("Policy `policy.yaml` (SHA-256 `") and ": passed." in policy
    assert "rule 'health-limits' (tag health): ε ≤ 4 per run" in policy


def test_non_private_dp_sgd_card_says_so_plainly(tmp_path, ledger_path):
    result = _run("dp_sgd", [*TINY, "privacy=none", "ledger.allow_non_private=true"], tmp_path / "r", ledger_path)
    card = _card(result)
    _assert_reviewable(card, result, ledger_path)
    assert "**No differential privacy guarantee (epsilon = infinity)**" in card
    assert "No DP mechanism: the model was trained without differential privacy (no clipping, no noise)." in card
    assert "## What the guarantee does not cover" not in card  # there is no guarantee to qualify
    assert "spent ε = ∞" in card and "No budget set: the spend is tracked, not enforced." in card


@pytest.mark.slow
def test_federated_central_card(tmp_path, ledger_path):
    tiny = [
        "fl.num_clients=3",
        "fl.fraction=1.0",
        "fl.rounds=1",
        "fl.local_epochs=1",
        "recipe.progress=false",
        "fl.simulation.num_cpus=1",
        "fl.simulation.cpus_per_client=0.5",
    ]
    result = _run("federated", tiny, tmp_path / "r", ledger_path)
    card = _card(result)
    _assert_reviewable(card, result, ledger_path)
    central = json.loads((result.output_dir / "metrics.json").read_text())["central_dp"]
    assert "-differential privacy per client (all the data of one federated participant)**" in card
    mechanism = card.split("### Mechanism", 1)[1].split("\n## ", 1)[0]
    assert f"clipped to L2 norm {central['clipping_norm']:.4g} (the clip norm" in mechanism
    assert f"(noise multiplier {central['noise_multiplier']:.4g})" in mechanism
    assert "1 round(s)" in mechanism and ("expected cohort 3 of 3" in mechanism or "cohort of 3 of 3" in mechanism)
    assert "batch size" in mechanism and "learning rate" in mechanism
    caveats = _section(card, "What the guarantee does not cover")
    assert "Central DP trusts the server" in caveats and not any(o in card for o in OPACUS)
    assert "population" in _section(card, "Privacy ledger")
    assert "- federated population: iid, 3 clients" in _section(card, "Data source")
    assert "{'" not in card  # no dict dumps


def test_dp_synthesizer_card(tmp_path, ledger_path):
    result = _run(
        "synthetic",
        [
            "dataset=wine",
            "synth=dp_gaussian_copula",
            "synth.epsilon=2",
            "synth.report=false",
            "synth.utility.enabled=false",
        ],
        tmp_path / "r",
        ledger_path,
    )
    card = _card(result)
    _assert_reviewable(card, result, ledger_path)
    dp = json.loads((result.output_dir / "metrics.json").read_text())["dp"]
    assert "**(2.00, 1e-05)-differential privacy per example" in card
    mechanism = card.split("### Mechanism", 1)[1].split("\n## ", 1)[0]
    assert f"clipped to L2 norm {dp['row_clip']:.4g} (the clip norm)" in mechanism
    assert f"({dp['bins']} bins)" in mechanism and f"standard deviation {dp['marginal_noise']:.4g}" in mechanism
    assert "synthetic.csv" in card and str(result.output_dir) not in card
    caveats = _section(card, "What the guarantee does not cover")
    assert "declared public domain" in caveats and not any(o in card for o in OPACUS)
    assert "left out" in _section(card, "Personal data (PII)")
    assert "Scores (from report.md)" in card


# --- sections from plain values ---------------------------------------------------------------------------


def _render(**kw) -> str:
    g = Guarantee(1.23456789, 1e-5, "example", "prv", ())
    base = dict(
        recipe="dp_sgd",
        intended_use="Use.",
        dataset={"name": "t", "fingerprint": "ab" * 32},
        guarantees=[g],
        metrics={"accuracy": 0.912345678},
        model="m",
        ledger={
            "path": "/srv/team/.privtrain/ledger.db",
            "entry": "e1",
            "charges": [
                {
                    "name": "t",
                    "unit": "example",
                    "budget": None,
                    "spent_after_run": 1.2345678,
                    "filter_after_run": 2.0,
                    "remaining": None,
                    "link": None,
                }
            ],
        },
    )
    return model_card.render(**{**base, **kw})


def test_numbers_are_rounded_and_the_ledger_is_named_by_file():
    card = _render()
    assert "(1.23, 1e-05)-differential privacy" in card and "accuracy: 0.9123" in card
    assert "Ledger `ledger.db`" in card and "/srv/team" not in card and "None" not in card
    assert "No budget set" in card


def test_tags_pii_and_policy_render_whatever_subset_is_given():
    pii = {
        "scanned": True,
        "findings": [{"column": "email", "kind": "email", "reason": "98% of values match"}],
        "allowed": ["zip"],
        "dropped": ["name"],
    }
    policy = {
        "file": "policy.yaml",
        "sha256": "cd" * 32,
        "rules": ["at most ε=2 per run on tag health"],
        "result": "passed",
    }
    card = _render(
        dataset={"name": "t", "fingerprint": "ab" * 32, "tags": ["health", "eu"], "pii": pii},
        ledger={"path": "postgresql://u:secret@db/x", "entry": "e", "policy": policy, "charges": []},
    )
    assert "- tags: health, eu" in card
    section = _section(card, "Personal data (PII)")
    assert "found 1 column(s)" in section and "| `email` | email | 98% of values match |" in section
    assert "`dataset.pii.allow`): `zip`" in section and "`dataset.drop`): `name`" in section
    assert "Policy `policy.yaml` (SHA-256 `cdcdcdcdcdcd`): passed." in card and "- at most ε=2 per run" in card
    assert "secret" not in card
    assert "no personal data was found" in _render(dataset={"name": "t", "pii": {"scanned": True}})
    assert "| `ssn` | identifier |" in _render(dataset={"name": "t", "pii": {"findings": [{"column": "ssn"}]}})
    bare = _render(dataset={"name": "t"})
    for absent in ("## Personal data", "## Policy", "## Software bill", "- tags:"):
        assert absent not in bare


def test_a_budget_shows_the_filter_and_what_remains():
    charge = {
        "name": "t",
        "unit": "example",
        "budget": {"epsilon": 8.0, "delta": 1e-5},
        "spent_after_run": 1.5,
        "filter_after_run": 2.25,
        "remaining": 5.75,
        "population": None,
        "link": None,
    }
    assert card_text.charge_text(charge) == (
        "After this run the source has spent ε = 1.50 (PLD estimate over all its runs). Budget: ε = 8.00 at "
        "δ = 1e-05; the admission filter certifies ε = 2.25 spent, so ε = 5.75 remains for later runs."
    )


def test_formatting():
    assert (card_text.eps(math.inf), card_text.eps(2.99712), card_text.eps(12.345)) == ("∞", "3.00", "12.3")
    assert (card_text.delta(1e-5), card_text.delta(3.4e-6)) == ("1e-05", "3.4e-06")
    assert (
        model_card.no_paths("in `/home/u/run/synthetic.csv`, see https://x.org/a/b")
        == "in `synthetic.csv`, see https://x.org/a/b"
    )


def test_the_template_ships_with_the_package():
    setup = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    assert '"privtrain.artifacts": ["templates/*.j2"]' in setup
    assert (Path(model_card.__file__).parent / "templates" / model_card.TEMPLATE).is_file()


def test_the_audit_section_states_its_charge_and_the_spend_after_it():
    from privtrain.audit.report import _cost

    after = {
        "name": "digits",
        "unit": "example",
        "budget": {"epsilon": 8.0, "delta": 1e-5},
        "spent_after_run": 4.5,
        "filter_after_run": 5.0,
        "remaining": 3.0,
    }
    text = _cost(
        {
            "models": 4,
            "variant": "offline",
            "data": "charged",
            "charged_epsilon": 1.5,
            "ledger_entry": "a1",
            "ledger_after": after,
        }
    )
    assert "charged ε = 1.5 to the ledger as entry `a1`" in text
    assert "After the audit the source has spent ε = 4.50" in text and "ε = 3.00 remains" in text
