"""The audit's pieces: bounds, attack metrics, LiRA scoring, settings, the card, the CLI (fast)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from privtrain.audit import bounds, lira, report, settings
from privtrain.errors import UserError

# --- bounds --------------------------------------------------------------------


def test_clopper_pearson_golden_numbers():
    # k = 0 and k = n have closed forms: 1 - alpha^(1/n) and alpha^(1/n).
    assert bounds.clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert bounds.clopper_pearson_lower(100, 100, 0.05) == pytest.approx(0.05 ** (1 / 100))
    assert bounds.clopper_pearson_lower(0, 100, 0.05) == 0.0
    assert bounds.clopper_pearson_upper(100, 100, 0.05) == 1.0
    # An interior value: the exact binomial tail P(X >= 50 | p = lower) equals alpha.
    from scipy.stats import binom

    lower = bounds.clopper_pearson_lower(50, 100, 0.05)
    assert lower == pytest.approx(0.41362, abs=1e-5)
    assert binom.sf(49, 100, lower) == pytest.approx(0.05, rel=1e-6)
    with pytest.raises(ValueError, match="k=5"):
        bounds.clopper_pearson_lower(5, 3, 0.05)


def test_epsilon_from_counts_golden_and_delta():
    eps = bounds.epsilon_from_counts(tp=1000, n_pos=1000, fp=0, n_neg=1000, delta=0.0, alpha=0.05)
    assert eps == pytest.approx(math.log(0.05**0.001 / (1 - 0.05**0.001)), rel=1e-9)
    assert eps == pytest.approx(5.809, abs=1e-3)
    # delta eats into the TPR: a large delta leaves nothing to show.
    assert bounds.epsilon_from_counts(tp=1000, n_pos=1000, fp=0, n_neg=1000, delta=0.999, alpha=0.05) == 0.0
    # Equal rates show nothing.
    assert bounds.epsilon_from_counts(tp=50, n_pos=100, fp=50, n_neg=100, delta=0.0, alpha=0.05) == 0.0


def test_lower_bound_separated_scores_reach_the_maximum_and_bonferroni_lowers_it():
    members, nonmembers = np.ones(500), np.zeros(500)
    one = bounds.epsilon_lower_bound(members, nonmembers, delta=1e-5, confidence=0.95)
    three = bounds.epsilon_lower_bound(members, nonmembers, delta=1e-5, confidence=0.95, n_attacks=3)
    assert one.epsilon > three.epsilon > 4.0
    assert one.fp == 0 and one.tp == 500
    assert bounds.max_provable_epsilon(500, 500, delta=1e-5, n_attacks=3) == pytest.approx(three.epsilon)


def test_lower_bound_of_a_useless_attack_is_zero_and_a_leaky_one_is_positive():
    rng = np.random.default_rng(0)
    useless = bounds.epsilon_lower_bound(rng.normal(size=2000), rng.normal(size=2000), delta=1e-5)
    assert useless.epsilon < 0.2
    leaky = bounds.epsilon_lower_bound(rng.normal(3, 1, size=2000), rng.normal(size=2000), delta=1e-5)
    assert leaky.epsilon > 2.0 and leaky.side in ("tpr", "tnr")


def test_low_scores_count_too_the_tnr_side():
    # Members are ordinary; a tenth of the non-members score far below everyone (misclassified rows).
    rng = np.random.default_rng(1)
    members = rng.uniform(0.5, 1.0, size=1000)
    nonmembers = np.r_[rng.uniform(0.5, 1.0, size=900), rng.uniform(-1.0, 0.0, size=100)]
    bound = bounds.epsilon_lower_bound(members, nonmembers, delta=1e-5)
    assert bound.side == "tnr" and bound.epsilon > 0


def test_fp_grid_is_short_and_starts_at_zero():
    grid = bounds.fp_grid(1000)
    assert grid[:4] == [0, 1, 2, 3] and max(grid) <= 500 and len(grid) < 25


# --- attack metrics and model outputs -----------------------------------------------


def test_attack_metrics_of_perfect_and_random_attacks():
    from privtrain.audit.attacks import attack_metrics

    perfect = attack_metrics(np.arange(100) + 100.0, np.arange(100.0), delta=1e-5, confidence=0.95, n_attacks=1)
    assert perfect["auc"] == 1.0 and perfect["advantage"] == 1.0 and perfect["tpr_at_0.001_fpr"] == 1.0
    rng = np.random.default_rng(0)
    noise = attack_metrics(rng.normal(size=3000), rng.normal(size=3000), delta=1e-5, confidence=0.95, n_attacks=1)
    assert abs(noise["auc"] - 0.5) < 0.03 and noise["tpr_at_0.01_fpr"] < 0.03 and noise["epsilon_lower_bound"] < 0.2


def test_outputs_from_logits_are_exact_where_probabilities_saturate():
    from privtrain.audit.attacks import outputs_from_logits

    logits = np.array([[50.0, 0.0, 0.0], [60.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    out = outputs_from_logits(logits, np.array([0, 0, 0]))
    # p_y rounds to 1 for both first rows, but their logit-scaled confidences stay ordered.
    assert out.max_prob[0] == out.max_prob[1] == 1.0
    assert out.logit_confidence[1] - out.logit_confidence[0] == pytest.approx(10.0)
    assert out.logit_confidence[0] == pytest.approx(50 - math.log(2))
    assert out.logit_max_prob[2] == pytest.approx(2 - math.log(2))
    assert out.loss[2] == pytest.approx(-math.log(1 / (2 + math.exp(2))))
    # The loss attack's score ranks exactly as the negative loss.
    scores = out.scores()["loss"]
    assert np.argsort(scores).tolist() == np.argsort(-out.loss).tolist()


# --- LiRA ------------------------------------------------------------------------


def test_shadow_halves_put_every_row_in_exactly_half_the_shadows():
    inside = lira.shadow_halves(11, 6, np.random.default_rng(0))
    assert inside.shape == (6, 11)
    assert set(inside.sum(axis=1)) == {5}  # every shadow trains on floor(11/2) rows
    assert inside.sum(axis=0).max() == 3  # no row is in more than K/2 shadows: what the ledger is charged
    assert not (inside[0] & inside[1]).any()  # complementary pairs
    with pytest.raises(ValueError, match="even"):
        lira.shadow_halves(10, 3, np.random.default_rng(0))


def _lira_world(n=2000, k=8, gap=1.5, seed=0):
    """Per-example difficulty d_i; a model that trained on row i gives it phi = d_i + gap + noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 3, size=n)
    inside = lira.shadow_halves(n, k, rng)
    shadow_phi = difficulty + gap * inside + rng.normal(0, 0.5, size=(k, n))
    member = rng.random(n) < 0.5
    target_phi = difficulty + gap * member + rng.normal(0, 0.5, size=n)
    return target_phi, shadow_phi, inside, member


def test_online_lira_beats_the_global_threshold_when_difficulty_varies():
    from sklearn.metrics import roc_auc_score

    target_phi, shadow_phi, inside, member = _lira_world()
    lira_auc = roc_auc_score(member, lira.online_scores(target_phi, shadow_phi, inside))
    threshold_auc = roc_auc_score(member, target_phi)  # the loss attack: one threshold for all rows
    assert lira_auc > 0.9 and threshold_auc < 0.7


def test_offline_lira_works_from_out_shadows_alone():
    from sklearn.metrics import roc_auc_score

    target_phi, shadow_phi, inside, member = _lira_world()
    out_only = shadow_phi - 1.5 * inside  # shadows that never saw any target row
    assert roc_auc_score(member, lira.offline_scores(target_phi, out_only)) > 0.85


def test_lira_is_blind_when_training_on_a_row_changes_nothing():
    from sklearn.metrics import roc_auc_score

    target_phi, shadow_phi, inside, member = _lira_world(gap=0.0)
    assert abs(roc_auc_score(member, lira.online_scores(target_phi, shadow_phi, inside)) - 0.5) < 0.05


# --- settings ----------------------------------------------------------------------


def test_audit_yaml_matches_the_typed_defaults():
    from privtrain import config

    s = config.settings("dp_sgd", config.compose("dp_sgd")).audit
    assert s == settings.AuditSettings()  # the shipped yaml and the dataclass agree
    assert s.enabled is False and s.shadow_data is None and s.shadow_models == 4


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"shadow_models": 3}, r"audit.shadow_models=3 must be 0 .* or an even number >= 4"),
        ({"shadow_models": 2}, r"audit.shadow_models=2"),
        ({"shadow_data": "public"}, r"audit.shadow_data='public' is unknown; choose charged or pool"),
        ({"shadow_data": "pool"}, r"audit.shadow_data=pool needs the audit data: pass audit.pool_path="),
        ({"confidence": 1.0}, r"audit.confidence=1.0 must lie in \[0.5, 1\)"),
    ],
)
def test_bad_settings_are_one_line_user_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        settings.AuditSettings().with_overrides(**overrides)


def test_run_section_then_arguments_override_the_defaults():
    run_section = {"enabled": True, "shadow_models": 8, "shadow_data": "charged", "unknown": 1}
    s = settings.AuditSettings.from_dict(run_section).with_overrides(shadow_models=0, confidence=None)
    assert (s.shadow_models, s.shadow_data, s.confidence) == (0, "charged", 0.95)


# --- the model card ------------------------------------------------------------------


def _audit(red_flag: bool, lb: float = 2.0) -> dict:
    attack = {"auc": 0.8, "advantage": 0.5, "epsilon_lower_bound": lb, "tpr_at_0.01_fpr": 0.2, "tpr_at_0.001_fpr": 0.1}
    return {
        "created": "now",
        "claimed": {"epsilon": 1.0 if red_flag else 8.0, "delta": 1e-5, "unit": "example"},
        "epsilon_lower_bound": lb,
        "confidence": 0.95,
        "best_attack": "loss",
        "attacks": {"loss": attack},
        "n_members": 100,
        "n_nonmembers": 100,
        "max_provable_epsilon": 3.0,
        "red_flag": red_flag,
        "shadow": {"models": 0},
        "notes": [],
        "run_dir": "r",
        "dataset": {"name": "digits"},
    }


CARD = "# Model card: dp_sgd on digits\n\n_Generated._\n\n## Privacy guarantee\n\n- eps\n\n## Provenance\n\n- git\n"


def test_card_gets_one_section_before_provenance_and_a_banner_only_when_flagged():
    flagged = _audit(True)
    once = report.update_card_text(CARD, report.card_section(flagged), report.red_flag_banner(flagged))
    twice = report.update_card_text(once, report.card_section(flagged), report.red_flag_banner(flagged))
    assert once == twice  # re-auditing replaces, never stacks
    assert twice.count("## Empirical privacy audit") == 1 and twice.count("RED FLAG — PRIVACY AUDIT FAILED") == 1
    lines = twice.splitlines()
    assert "RED FLAG" in lines[3]  # right under the title, before anything else
    assert twice.index("## Empirical privacy audit") < twice.index("## Provenance")
    ok = _audit(False)
    cleared = report.update_card_text(twice, report.card_section(ok), report.red_flag_banner(ok))
    assert "RED FLAG" not in cleared and "Consistent with the guarantee" in cleared
    assert cleared.count("## Empirical privacy audit") == 1


def test_card_section_states_claim_bound_auc_and_tpr():
    text = report.card_section(_audit(True, lb=2.5))
    assert "claimed: ε = 1" in text and "ε ≥ 2.5" in text and "| 0.800 | 0.200 | 0.100 |" in text
    assert "Do not release the model" in text


# --- the command line ------------------------------------------------------------------


def test_audit_subcommand_loads_no_torch():
    code = (
        "import sys, privtrain.cli as c; p = c._parser(); "
        "a = p.parse_args(['audit', 'x', '--shadow-models', '0']); "
        "assert a.func.__module__ == 'privtrain.audit.cli', a.func; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_audit_of_a_missing_or_foreign_directory_exits_2(cli, tmp_path):
    missing = cli("audit", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text('{"recipe": "gan"}')
    foreign = cli("audit", str(tmp_path / "other"))
    assert foreign.returncode == 2 and "no run.json" in foreign.stderr and "Traceback" not in foreign.stderr


def test_preflight_refuses_shadows_without_a_data_source_before_training():
    from privtrain import config
    from privtrain.audit import preflight

    def audit(*overrides, recipe="dp_sgd"):
        return config.settings(recipe, config.compose(recipe, list(overrides))).audit

    preflight(audit(), "dp_sgd")  # disabled: nothing to check
    preflight(audit("audit.enabled=true", "audit.shadow_models=0"), "dp_sgd")
    preflight(audit("audit.enabled=true", "audit.shadow_data=charged"), "dp_sgd")
    with pytest.raises(UserError, match="audit.enabled=true with audit.shadow_models=4 needs audit.shadow_data"):
        preflight(audit("audit.enabled=true"), "dp_sgd")
    with pytest.raises(UserError, match="audit.shadow_models=5"):
        audit("audit.enabled=true", "audit.shadow_models=5")


def test_a_recipe_that_cannot_be_audited_is_refused_before_anything_is_charged(tmp_path, ledger_path):
    import privtrain

    with pytest.raises(UserError, match=r"audit.enabled=true: the federated recipe cannot be audited yet"):
        privtrain.run("federated", ["audit.enabled=true", "fl.rounds=1"], output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert not ledger_path.exists() or privtrain.ledger.open(ledger_path).entries() == []


def test_the_epsilon_bound_spends_its_confidence_on_both_one_sided_intervals_of_every_threshold():
    from privtrain.audit.bounds import epsilon_from_counts, epsilon_lower_bound, fp_grid

    members, nonmembers = np.ones(100), np.zeros(100)
    bound = epsilon_lower_bound(members, nonmembers, delta=1e-5, confidence=0.95)
    candidates = len(fp_grid(100)) * 2
    expected = epsilon_from_counts(tp=100, n_pos=100, fp=0, n_neg=100, delta=1e-5, alpha=0.05 / (2 * candidates))
    too_loose = epsilon_from_counts(tp=100, n_pos=100, fp=0, n_neg=100, delta=1e-5, alpha=0.05 / candidates)
    assert bound.epsilon == pytest.approx(expected) and bound.epsilon < too_loose
