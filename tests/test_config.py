"""Every shipped config composes; each YAML says how to use it."""

from __future__ import annotations

import pytest

from privtrain import config
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
    cfg = config.compose(recipe, [f"{group}={option}"])
    assert cfg.seed is not None and "ledger" in cfg and "path" in cfg.ledger


def test_shared_keys_exist():
    cfg = config.compose("dp_sgd")
    for key in ("seed", "dataset.path", "dataset.target", "privacy.target_epsilon", "privacy.delta",
                "privacy.noise_multiplier", "privacy.max_grad_norm", "privacy.accountant",
                "ledger.path", "ledger.allow_non_private"):
        node = cfg
        for part in key.split("."):
            assert part in node, key
            node = node[part]
    assert cfg.dataset.name == "digits" and cfg.privacy.target_epsilon == 3.0


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
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(repo),
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path, timeout=300)
    wheel = next(tmp_path.glob("privtrain-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("privtrain/configs/")}
    expected = {f"privtrain/configs/{p.relative_to(config.config_dir())}" for p in ALL_YAML}
    assert expected <= shipped


def test_training_length_is_steps_rounded_up_to_whole_epochs_unless_epochs_is_set():
    recipe = config.compose("dp_sgd", []).recipe
    assert recipe.epochs is None and recipe.steps == 360
    assert config.train_settings(recipe, 1437).epochs == 30  # digits: 12 batches of 128 per epoch
    assert config.train_settings(recipe, 455).epochs == 90  # breast_cancer: 4 per epoch
    assert config.train_settings(recipe, 100_000).epochs == 1  # never zero epochs
    assert config.train_settings(config.compose("dp_sgd", ["recipe.epochs=7"]).recipe, 455).epochs == 7
    with pytest.raises(UserError, match=r"recipe\.steps=0 must be at least 1"):
        config.train_settings(config.compose("dp_sgd", ["recipe.steps=0"]).recipe, 455)
