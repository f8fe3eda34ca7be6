"""Bad input, across every recipe and the ledger: one clear line, exit 2, no traceback, nothing charged,
and the ledger still verifies. Each row is a real command a user could type."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

CSV = ["dataset=csv", "dataset.path=data.csv", "dataset.target=y"]
DECLARED = "+dataset.schema={x: {min: 0, max: 1}, y: {categories: [0, 1]}}"
FAST = ["recipe.epochs=1", "recipe.progress=false"]

CASES = [
    # the config border
    (["run", "gan"], "recipe 'gan' is unknown"),
    (["run", "dp_sgd", "dataset=mnist"], "dataset=mnist is unknown"),
    (["run", "dp_sgd", "model=resnet"], "model=resnet is unknown"),
    (["run", "dp_sgd", "privacy.accountant=moments"], "privacy.accountant='moments' is unknown"),
    (["run", "dp_sgd", "privacy=central"], "privacy=central is for the federated recipe"),
    (["run", "dp_sgd", "privacy.target_epsilon=abc"], "privacy.target_epsilon='abc' must be a number"),
    (["run", "dp_sgd", "recipe.ema=null"], "recipe.ema=None must be a number"),
    (["run", "dp_sgd", "seed=abc"], "seed='abc' must be a whole number"),
    (["run", "dp_sgd", "recipe.lr=-1"], "recipe.lr=-1 must be > 0"),
    (["run", "dp_sgd", "recipe.optimizer=rmsprop"], "recipe.optimizer='rmsprop' is unknown"),
    (["run", "dp_sgd", "+recipe.step=100"], "recipe.step is not a setting of the dp_sgd recipe; did you mean recipe.steps"),
    (["run", "dp_sgd", "privacy.unit=client"], "privacy.unit is not a setting"),
    (["run", "dp_sgd", "dataset.name=csv"], "dataset.name is not a setting"),
    (["run", "dp_sgd", "model.hidden=[0]"], "model.hidden=[0] must list positive whole numbers"),
    (["run", "dp_sgd", "synth=ctgan"], "synth=... does not apply to the dp_sgd recipe"),
    (["run", "dp_sgd", "tracking=wandb"], "tracking=wandb is unknown"),
    (["run", "dp_sgd", "device=tpu"], "device='tpu' is unknown; choose auto, cpu, cuda or cuda:N"),
    (["run", "dp_sgd", "device=cuda:7"], "device=cuda:7: "),
    (["run", "dp_sgd", "tracking.kind=wandb"], "tracking.kind='wandb' is unknown"),
    (["run", "dp_sgd", "dataset.test_size=1.5"], "dataset.test_size=1.5 must lie in (0, 1)"),
    (["run", "dp_sgd", "dataset.source=foo"], "dataset=digits names its own source"),
    (["run", "dp_sgd", *CSV, "dataset.source='bad name!'", DECLARED], "is not a valid source name"),
    (["run", "dp_sgd", *CSV, "dataset.source=bad name!", DECLARED], "is not valid override syntax"),
    # privacy settings
    (["run", "dp_sgd", "privacy.target_epsilon=0"], "privacy.target_epsilon=0"),
    (["run", "dp_sgd", "privacy.target_epsilon=-2"], "must be > 0"),
    (["run", "dp_sgd", "privacy.target_epsilon=1e6"], "is above 50"),
    (["run", "dp_sgd", "privacy.target_epsilon=1e9"], "is above 50"),
    (["run", "dp_sgd", "privacy.target_epsilon=1e-9"], "cannot be reached with"),
    (["run", "dp_sgd", "privacy.target_epsilon=null", "privacy.noise_multiplier=0.01"], "is below 0.3"),
    (["run", "dp_sgd", "privacy.delta=0.01"], "privacy.delta=0.01 must lie in (0, 1/n)"),
    (["run", "dp_sgd", "recipe.batch_size=100000"], "recipe.batch_size=100000 is larger than"),
    (["run", "dp_sgd", "recipe.grad_sample_mode=magic"], "recipe.grad_sample_mode='magic' is unknown"),
    (["run", "dp_sgd", "recipe.grad_sample_mode=ghost", "recipe.clipping=per_layer"], "supports recipe.clipping=flat only"),
    # the data
    (["run", "dp_sgd", "dataset=csv"], "dataset.path is required"),
    (["run", "dp_sgd", "dataset=csv", "dataset.path=missing.csv", "dataset.target=y"], "no such file"),
    (["run", "dp_sgd", *CSV[:2], "dataset.target=nope", "dataset.infer_schema=true"], "dataset.target='nope' is not a column"),
    (["run", "dp_sgd", *CSV, "dataset.id_column=nope", DECLARED], "dataset.id_column='nope' is not a column"),
    (["run", "dp_sgd", *CSV], "dataset.schema is not declared"),
    (["run", "dp_sgd", "dataset=csv", "dataset.path=text.csv", "dataset.target=y", DECLARED],
     "some rows hold text where the schema declares numbers"),
    (["run", "dp_sgd", "dataset=csv", "dataset.path=nan_label.csv", "dataset.target=y", DECLARED, *FAST],
     "some rows have a target label outside the declared classes"),
    (["run", "dp_sgd", *CSV, "+dataset.schema={x: {min: 0, max: 1}, y: {categories: [0]}}"],
     "a classifier needs at least 2"),
    (["run", "dp_sgd", "resume=missing.pt"], "resume: no checkpoint at"),
    # the PII gate's two lists (a refusal itself is one line per finding: tests/test_pii.py)
    (["run", "dp_sgd", *CSV, "dataset.drop=[nope]", DECLARED], "dataset.drop: column(s) ['nope'] are not in"),
    (["run", "dp_sgd", *CSV, "dataset.pii.allow=[nope]", DECLARED], "dataset.pii.allow: column(s) ['nope'] are not"),
    (["run", "dp_sgd", "+dataset.drop=[x]"], "dataset.drop / dataset.pii.allow apply to dataset=csv or parquet"),
    (["run", "synthetic", *CSV, "dataset.drop=[x]"], "dataset.drop is not supported by the synthetic recipe"),
    # federated
    (["run", "federated", "fl.strategy=fedadam"], "fedadam cannot be used with central DP"),
    (["run", "federated", "fl.engine=warp"], "fl.engine='warp' is unknown"),
    (["run", "federated", "fl.partition=dirichlet", "fl.alpha=-1"], "must be > 0"),
    (["run", "federated", "fl.rounds=0"], "fl.rounds=0 must be at least 1"),
    (["run", "federated", "audit.enabled=true"], "the federated recipe cannot be audited yet"),
    (["run", "federated", "fl.engine=deployment", "fl.deployment.superlink=127.0.0.1:9"], "is unreachable"),
    # synthetic
    (["run", "synthetic", "synth=dp_gaussian_copula", "synth.epsilon=0"], "synth.epsilon=0"),
    (["run", "synthetic", "synth.num_rows=0"], "synth.num_rows=0 must be a positive"),
    (["run", "synthetic", "+synth.epochs=3"], "synth.epochs is not a GaussianCopulaSynthesizer hyperparameter"),
    (["run", "synthetic", "synth=gan9000"], "synth=gan9000 is unknown"),
    (["run", "synthetic", "privacy=dp"], "privacy=... does not apply to the synthetic recipe"),
    # the ledger and the other commands
    (["ledger", "budget", "set", "digits", "--epsilon=-1", "--delta", "1e-5"], "Expected budget epsilon=-1 > 0"),
    (["ledger", "budget", "set", "digits", "--epsilon", "1", "--delta", "2"], "Expected budget delta=2 in (0, 1)"),
    (["ledger", "budget", "set", "bad name!", "--epsilon", "1", "--delta", "1e-5"], "is not a valid source name"),
    (["ledger", "budget", "remove", "wine"], "has no example-level budget to remove"),
    (["ledger", "runs", "mnist"], "unknown source 'mnist'"),
    (["ledger", "reconcile", "--run", "nope"], "run nope has no open reservation"),
    (["ledger", "accept-damage", "--reason", "x"], "there is no damage to accept"),
    (["ledger", "verify", "--path", "typo.db"], "no ledger at"),
    (["audit", "nonexistent"], "does not exist"),
    (["verify", "nonexistent"], "does not exist"),
]


def _entries(path) -> list:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, hash FROM entries ORDER BY id").fetchall()


@pytest.fixture
def workdir(tmp_path, ledger_path, cli):
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.random(50), "y": rng.integers(0, 2, 50)}).to_csv(tmp_path / "data.csv", index=False)
    text = pd.DataFrame({"x": [str(v) for v in rng.random(50)], "y": rng.integers(0, 2, 50)})
    text.loc[7, "x"] = "unknown"  # (pandas reads "n/a" as a missing value)
    text.to_csv(tmp_path / "text.csv", index=False)
    labels = pd.DataFrame({"x": rng.random(50), "y": rng.integers(0, 2, 50).astype(float)})
    labels.loc[3, "y"] = np.nan
    labels.to_csv(tmp_path / "nan_label.csv", index=False)
    assert cli("ledger", "budget", "set", "digits", "--epsilon", "8", "--delta", "1e-5").returncode == 0
    return tmp_path


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_nothing_charged_and_the_ledger_verifies(argv, message, workdir, cli,
                                                                            ledger_path):
    before = _entries(ledger_path)
    out = cli(*argv)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("privtrain: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert _entries(ledger_path) == before  # nothing charged, nothing registered
    assert cli("ledger", "verify").returncode == 0


def test_the_corpus_is_large_and_covers_every_recipe_and_command():
    firsts = {tuple(a[:2]) if a[0] == "run" else (a[0],) for a, _ in CASES}
    assert len(CASES) >= 40
    assert {("run", "dp_sgd"), ("run", "federated"), ("run", "synthetic"), ("ledger",), ("audit",), ("verify",)} <= firsts
