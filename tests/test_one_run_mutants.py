"""Mutation tests: the one-run audit passes correct DP-SGD and flags each injected bug (about 30 s in all).

Each mutant (``PRIVTRAIN_MUTANT``, :mod:`privtrain.privacy.mutants`) leaves the plan, the accountant and
the claimed ε as for correct code; only the mechanism differs. The configuration is digits' default
model at claimed ε = 2 with 108 steps and 1,000 white-box canaries, audited at 99% confidence over
its three attacks, so a correct run is flagged by chance well under 1 time in 1,000 and each mutant
is caught with a margin of several standard errors (docs/audit.md, "Mutants").
"""

from __future__ import annotations

import pytest

from privtrain.privacy.mutants import MUTANTS

CONFIG = ["privacy.target_epsilon=2", "recipe.steps=100", "recipe.progress=false"]


def _audit(tmp_path, monkeypatch, mutant: str | None) -> dict:
    from privtrain.api import audit_one_run

    if mutant is None:
        monkeypatch.delenv("PRIVTRAIN_MUTANT", raising=False)
    else:
        monkeypatch.setenv("PRIVTRAIN_MUTANT", mutant)
    return audit_one_run("dp_sgd", CONFIG, output_dir=tmp_path / (mutant or "correct"), confidence=0.99)


def _eps(audit: dict, attack: str) -> float:
    return audit["attacks"][attack]["epsilon_lower"]


def test_correct_code_passes(tmp_path, monkeypatch, ledger_path):
    audit = _audit(tmp_path, monkeypatch, None)
    claimed = audit["claimed"]["epsilon"]
    assert audit["mutant"] is None and not audit["red_flag"] and audit["verdict"] == "consistent"
    assert audit["epsilon_lower_bound"] <= claimed
    assert audit["epsilon_lower_bound"] > 0.1 * claimed  # not vacuous (typically about half the claim here)
    assert not audit["structure"]["varies_with_rows"] and not audit["structure"]["differs_from_plan"]
    assert not ledger_path.exists()


@pytest.mark.parametrize("mutant", MUTANTS)
def test_every_mutant_is_flagged(mutant, tmp_path, monkeypatch):
    audit = _audit(tmp_path, monkeypatch, mutant)
    claimed = audit["claimed"]["epsilon"]
    assert audit["mutant"] == mutant
    assert audit["red_flag"] and audit["verdict"] == "red_flag", audit["reasons"]
    structure = audit["structure"]
    # Which check catches which bug (docs/audit.md): canaries see the noise, clipping and rate; the replay sees
    # seeded noise; only the structural probe sees a divisor (it scales signal and noise alike).
    if mutant in ("half_noise", "unclipped_linear"):
        assert _eps(audit, "gauss") > claimed
    if mutant == "double_rate":  # the canaries usually see it too, but with a smaller margin (benchmarks/)
        assert structure["differs_from_plan"] == ["sample_rate"]
    if mutant == "rows_divisor":
        assert structure["varies_with_rows"] == ["divisor"]
        assert audit["epsilon_lower_bound"] <= claimed  # no canary can see it
    if mutant == "seeded_noise":
        assert _eps(audit, "replay") > 3 * claimed
    if mutant != "double_rate" and mutant != "rows_divisor":
        assert not structure["flag"]


# --- federated central DP: canary clients through the server's sampler and DP-FedAvg release ------------------

FEDERATED = ["recipe.progress=false"]  # digits, 500 clients, 60 rounds, q = 0.1, client-level ε = 3


def _federated(tmp_path, name: str) -> dict:
    from privtrain.api import audit_one_run

    return audit_one_run("federated", FEDERATED, output_dir=tmp_path / name, confidence=0.99)


def test_federated_central_dp_passes_and_its_bugs_are_flagged(tmp_path, monkeypatch, ledger_path):
    from privtrain.federated import aggregation

    correct = _federated(tmp_path, "correct")
    assert correct["claimed"]["unit"] == "client" and correct["verdict"] == "consistent"
    assert 0 < correct["epsilon_lower_bound"] <= correct["claimed"]["epsilon"]
    release = aggregation.dp_fedavg

    def half_noise(*args, noise_multiplier, **kwargs):
        return release(*args, noise_multiplier=noise_multiplier / 2, **kwargs)

    monkeypatch.setattr(aggregation, "dp_fedavg", half_noise)
    assert _federated(tmp_path, "half_noise")["red_flag"]
    monkeypatch.setattr(aggregation, "dp_fedavg", release)
    monkeypatch.setattr(aggregation, "clip", lambda update, clipping_norm: update)  # the server forgets to clip
    unclipped = _federated(tmp_path, "unclipped")
    assert unclipped["red_flag"] and unclipped["attacks"]["gauss"]["epsilon_lower"] > unclipped["claimed"]["epsilon"]
    assert not ledger_path.exists()
