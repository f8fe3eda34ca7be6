"""Every shipped config composes; each YAML says how to use it."""

from __future__ import annotations

import pytest

from privtrain import config
from privtrain.config.settings import RECIPE_GROUPS
from privtrain.errors import UserError

ALL_YAML = sorted(config.config_dir().rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(config.config_dir())))
def test_every_yaml_starts_with_the_command_that_uses_it(path):
    lines = path.read_text().splitlines()
    if lines[0].startswith("# @package"):  # Hydra reads the package header only from the very first lines
        lines = lines[1:]
    assert lines[0].startswith("# privtrain run"), lines[0]


def _group_options():
    for recipe in config.recipes():
        for group, options in config.groups().items():
            for option in options:
                if group == "recipe" and option != recipe:
                    continue
                yield recipe, group, option


@pytest.mark.parametrize("recipe,group,option", list(_group_options()))
def test_every_group_option_composes_with_every_recipe(recipe, group, option):
    """Every option composes (so one sweep can name any group); the typed border then accepts it, or
    refuses it with one line when the group belongs to another recipe."""
    if "???" in (config.config_dir() / group / f"{option}.yaml").read_text():  # needs values only a user has
        with pytest.raises(UserError) as err:
            config.settings(recipe, config.compose(recipe, [f"{group}={option}"]))
        assert "\n" not in str(err.value)
        assert any(s in str(err.value) for s in ("is required", "does not apply", "needs a table"))
        return
    cfg = config.compose(recipe, [f"{group}={option}"])
    assert cfg.seed is not None and "ledger" in cfg and "path" in cfg.ledger
    foreign = group in ("model", "privacy", "fl", "synth") and group not in RECIPE_GROUPS[recipe]
    if group == "experiment":  # a preset is typed for the recipe its first command names; elsewhere it may not apply
        header = (config.config_dir() / "experiment" / f"{option}.yaml").read_text().splitlines()[1]
        if not header.startswith(f"# privtrain run {recipe} "):
            try:
                config.settings(recipe, cfg)
            except UserError as exc:  # never a traceback: one line naming the key
                assert "\n" not in str(exc) and recipe in str(exc)
            return
    if foreign:
        with pytest.raises(UserError, match=rf"(does not apply to the {recipe} recipe|not a setting of the {recipe})"):
            config.settings(recipe, cfg)
    else:
        s = config.settings(recipe, cfg)
        assert s.recipe == recipe and s.dataset.test_size == 0.2


def test_shared_keys_exist():
    s = config.settings("dp_sgd", config.compose("dp_sgd"))
    assert s.dataset.loader == "digits" and s.dataset.source is None and s.privacy.target_epsilon == 3.0
    assert s.privacy.name == "dp" and s.privacy.accountant == "prv" and s.ledger.path is None
    assert s.ledger.allow_non_private is False and s.seed == 0 and s.train.steps == 360
    assert not hasattr(s.privacy, "unit")  # the unit follows from the mechanism


@pytest.mark.parametrize(
    "override,match",
    [
        ("privacy.unit=client", r"privacy.unit is not a setting: the unit of privacy follows from the mechanism"),
        ("+privacy.unit=client", r"privacy.unit is not a setting"),
        ("+recipe.step=100", r"recipe.step is not a setting of the dp_sgd recipe; did you mean recipe.steps"),
        ("privacy.target_epsilon=abc", r"privacy.target_epsilon='abc' must be a number"),
        ("recipe.ema=null", r"recipe.ema=None must be a number"),
        ("seed=abc", r"seed='abc' must be a whole number"),
        ("dataset.name=csv", r"dataset.name is not a setting: dataset.name became dataset.loader"),
    ],
)
def test_the_border_refuses_unknown_keys_and_wrong_types_in_one_line(override, match):
    with pytest.raises(UserError, match=match) as err:
        config.validate_overrides("dp_sgd", [override])
    assert "\n" not in str(err.value) and "+privacy" not in str(err.value)


def test_bad_overrides_are_one_line_user_errors():
    with pytest.raises(UserError, match=r"^dataset=imagenet is unknown; choose one of .*digits"):
        config.validate_overrides("dp_sgd", ["dataset=imagenet"])
    with pytest.raises(UserError, match="model=resnet is unknown"):
        config.validate_overrides("dp_sgd", ["privacy.target_epsilon=1,3", "model=logreg,resnet"])
    with pytest.raises(UserError, match="recipe 'gan' is unknown"):
        config.compose("gan")


def test_config_hash_is_stable_and_sensitive():
    a, b = config.compose("dp_sgd"), config.compose("dp_sgd")
    c = config.compose("dp_sgd", ["seed=1"])
    assert config.config_hash(a) == config.config_hash(b) != config.config_hash(c)


@pytest.mark.slow
def test_the_wheel_ships_every_config(tmp_path):
    import subprocess
    import sys
    import zipfile

    repo = config.config_dir().parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(repo),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=300,
    )
    wheel = next(tmp_path.glob("privtrain-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("privtrain/configs/")}
    expected = {f"privtrain/configs/{p.relative_to(config.config_dir())}" for p in ALL_YAML}
    assert expected <= shipped


def test_training_length_is_steps_rounded_up_to_whole_epochs_unless_epochs_is_set():
    def train(*overrides):
        return config.settings("dp_sgd", config.compose("dp_sgd", list(overrides))).train

    spec = train()
    assert spec.epochs is None and spec.steps == 360
    assert spec.for_rows(1437).epochs == 30  # digits: 12 batches of 128 per epoch
    assert spec.for_rows(455).epochs == 90  # breast_cancer: 4 per epoch
    assert spec.for_rows(100_000).epochs == 1  # never zero epochs
    assert train("recipe.epochs=7").for_rows(455).epochs == 7
    with pytest.raises(UserError, match=r"recipe\.steps=0 must be at least 1"):
        train("recipe.steps=0").for_rows(455)
