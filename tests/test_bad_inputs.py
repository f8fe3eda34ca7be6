"""Bad input, across every recipe and the ledger: one clear line, exit 2, no traceback, nothing charged,
and the ledger still verifies. Each row is a real command a user could type."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, TINY

import privtrain
from privtrain import ledger
from privtrain.errors import UserError

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
    (
        ["run", "dp_sgd", "+recipe.step=100"],
        "recipe.step is not a setting of the dp_sgd recipe; did you mean recipe.steps",
    ),
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
    (
        ["run", "dp_sgd", "recipe.grad_sample_mode=ghost", "recipe.clipping=per_layer"],
        "supports recipe.clipping=flat only",
    ),
    # the data
    (["run", "dp_sgd", "dataset=csv"], "dataset.path is required"),
    (["run", "dp_sgd", "dataset=csv", "dataset.path=missing.csv", "dataset.target=y"], "no such file"),
    (
        ["run", "dp_sgd", *CSV[:2], "dataset.target=nope", "dataset.infer_schema=true"],
        "dataset.target='nope' is not a column",
    ),
    (["run", "dp_sgd", *CSV, "dataset.id_column=nope", DECLARED], "dataset.id_column='nope' is not a column"),
    (["run", "dp_sgd", *CSV], "dataset.schema is not declared"),
    (
        ["run", "dp_sgd", "dataset=csv", "dataset.path=text.csv", "dataset.target=y", DECLARED],
        "some rows hold text where the schema declares numbers",
    ),
    (
        ["run", "dp_sgd", "dataset=csv", "dataset.path=nan_label.csv", "dataset.target=y", DECLARED, *FAST],
        "some rows have a target label outside the declared classes",
    ),
    (
        ["run", "dp_sgd", *CSV, "+dataset.schema={x: {min: 0, max: 1}, y: {categories: [0]}}"],
        "a classifier needs at least 2",
    ),
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
    # a tester's corpus (issue 19): Hydra's own run-directory set-up, a name too long for the filesystem
    (["run", "dp_sgd", "hydra.run.dir=" + "a" * 300], "File name too long"),
    (["run", "dp_sgd", "recipe.lr=inf"], "recipe.lr=inf must be a finite number"),
    # issue 21: a user's config folder that is not there
    (["run", "dp_sgd", "dataset=mine", "--config-dir", "nope"], "--config-dir nope: no such folder"),
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
def test_bad_input_is_one_line_exit_2_nothing_charged_and_the_ledger_verifies(argv, message, workdir, cli, ledger_path):
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
    assert {
        ("run", "dp_sgd"),
        ("run", "federated"),
        ("run", "synthetic"),
        ("ledger",),
        ("audit",),
        ("verify",),
    } <= firsts


# --- the tester's corpus, in process: privtrain.run raises one UserError line and charges nothing -------------

LONG = "a" * 300
SCHEMA = "+dataset.schema={x: {min: %s, max: %s}, y: {categories: [0, 1]}}"
CASE = [
    "dataset=csv",
    "dataset.path=case.csv",
    "dataset.target=y",
    "+dataset.schema={x: {categories: [F, M]}, y: {categories: [0, 1]}}",
]
IN_PROCESS = [
    # accepted before: a setting that cannot be right, a policy that could not be met
    ("dp_sgd", ["recipe.lr=inf"], "recipe.lr=inf must be a finite number"),
    ("dp_sgd", ["recipe.ema=1.5"], "recipe.ema=1.5 must be below 1"),
    ("dp_sgd", ["privacy.max_grad_norm=inf"], "privacy.max_grad_norm=inf must be a finite number"),
    ("dp_sgd", ["ledger.policy=delta2.yaml"], "max_delta_per_run=2 must lie in (0, 1)"),
    # tracebacks before, some after the reservation
    ("dp_sgd", ["seed=1e30"], "seed=1e+30 is too large; use a whole number up to 4294967295"),
    ("dp_sgd", ["seed=-1"], "seed=-1 must be at least 0"),
    ("dp_sgd", [*CSV, SCHEMA % (0, "inf")], "dataset.schema.x.max=inf must be a finite number"),
    ("dp_sgd", [*CSV, SCHEMA % ("-inf", 1)], "dataset.schema.x.min=-inf must be a finite number"),
    ("dp_sgd", [*CSV, SCHEMA % ("abc", 1)], "dataset.schema.x.min='abc' must be a number"),
    ("dp_sgd", [*CSV, SCHEMA % ("nan", 1)], "dataset.schema.x.min=nan must be a finite number"),
    (
        "dp_sgd",
        ["dataset=csv", "dataset.path=inf.csv", "dataset.target=y", SCHEMA % (0, 1)],
        "column 'x' of 'inf.csv' holds an infinite value (inf or -inf) in some rows",
    ),
    (
        "dp_sgd",
        ["dataset=csv", "dataset.path=ninf.csv", "dataset.target=y", SCHEMA % (0, 1)],
        "holds an infinite value (inf or -inf) in some rows",
    ),
    ("synthetic", ["dataset=csv", "dataset.path=inf.csv", "dataset.target=y"], "holds an infinite value"),
    (
        "dp_sgd",
        ["dataset=image_folder", "dataset.path=images", "dataset.image.size=[0,0]"],
        "size [height, width] in pixels (1..4096 each)",
    ),
    (
        "dp_sgd",
        ["dataset=image_folder", "dataset.path=images", "dataset.image.size=[1e30,8]"],
        "size [height, width] in pixels (1..4096 each)",
    ),
    (
        "dp_sgd",
        ["dataset=csv", f"dataset.path={LONG}.csv", "dataset.target=y", SCHEMA % (0, 1)],
        "dataset.path: File name too long",
    ),
    ("dp_sgd", [f"ledger.policy={LONG}.yaml"], "ledger.policy: File name too long"),
    ("synthetic", ["synth=dp_gaussian_copula", "synth.epsilon=1e9"], "synth.epsilon=1e+09 is above 50"),
    # issue 21: schemas that used to fail silently (all-zero inputs) or take parameters from the rows
    (
        "dp_sgd",
        [*CASE, "dataset.public_n=50"],
        "dataset.schema.x: some rows hold values that match the declared "
        "categories ['F', 'M'] only when case is ignored",
    ),
    ("synthetic", [*CASE, "synth=dp_gaussian_copula"], "only when case is ignored"),
    (
        "dp_sgd",
        [*CSV, "+dataset.schema={x: {min: 0, max: 1, transform: standardize}, y: {categories: [0, 1]}}"],
        "dataset.schema.x.transform='standardize' would take its parameters from the private rows",
    ),
    ("dp_sgd", [*CSV, "+dataset.schema={x: {bins: 10}, y: {categories: [0, 1]}}"], "list the public edges"),
]


@pytest.fixture
def files(tmp_path, ledger_path, monkeypatch):
    """The tester's files in the working directory; a budget on digits, set in process."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, value in (("inf", np.inf), ("ninf", -np.inf), ("nan", np.nan)):
        frame = pd.DataFrame({"x": rng.random(50), "y": rng.integers(0, 2, 50)})
        frame.loc[5, "x"] = value
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    pd.DataFrame({"x": rng.random(50), "y": rng.integers(0, 2, 50)}).to_csv(tmp_path / "data.csv", index=False)
    pd.DataFrame({"x": ["F", "M", "f", "m", "F"] * 10, "y": rng.integers(0, 2, 50)}).to_csv(
        tmp_path / "case.csv", index=False
    )
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(tmp_path / "images" / label / f"{i}.png")
    (tmp_path / "delta2.yaml").write_text("version: 1\nrules:\n  - name: r\n    max_delta_per_run: 2\n")
    ledger.open(ledger_path).set_budget("digits", "example", 8.0, 1e-5)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _refused(recipe: str, overrides: list[str], files, ledger_path, **kw) -> str:
    """Run in process: one UserError line; the ledger holds exactly what it held, and verifies."""
    before = _entries(ledger_path)
    with pytest.raises(UserError) as err:
        privtrain.run(recipe, overrides, **{"output_dir": files / "run", **kw})
    assert _entries(ledger_path) == before  # nothing charged, nothing registered
    assert ledger.open(ledger_path).verify().ok
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    "recipe,overrides,message", IN_PROCESS, ids=[f"{r} {' '.join(o)[:50]}" for r, o, _ in IN_PROCESS]
)
def test_the_testers_corpus_is_one_line_and_charges_nothing(recipe, overrides, message, files, ledger_path):
    assert message in _refused(recipe, [*overrides, *(FAST if recipe == "dp_sgd" else ())], files, ledger_path)


def test_missing_cells_are_missing_values_not_errors(files, ledger_path):
    """NaN cells are missing values (the middle of the declared range), as documented: the run goes ahead."""
    result = privtrain.run(
        "dp_sgd",
        [
            "dataset=csv",
            "dataset.path=nan.csv",
            "dataset.target=y",
            SCHEMA % (0, 1),
            *FAST,
            "recipe.batch_size=8",
            "recipe.max_physical_batch_size=8",
            "dataset.public_n=50",
        ],
        output_dir=files / "run",
    )
    assert result.guarantees


def test_a_project_policy_that_is_a_folder_refuses_the_run(files, ledger_path):
    (ledger_path.parent / "policy.yaml").mkdir()  # where the project's policy is looked for, beside the ledger
    assert "is not a file (a folder?): no run goes ahead ungoverned" in _refused("dp_sgd", TINY, files, ledger_path)


def test_an_output_folder_that_cannot_be_made_charges_nothing(files, ledger_path):
    text = _refused("dp_sgd", TINY, files, ledger_path, output_dir=files / LONG / "run")
    assert "output directory" in text and "File name too long" in text and "use a shorter path" in text
    (files / "blocker").write_text("a file where a folder should be")
    assert "Not a directory" in _refused("dp_sgd", TINY, files, ledger_path, output_dir=files / "blocker" / "run")


def test_a_ray_runtime_that_cannot_start_charges_nothing(files, ledger_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # a stale address: ray.init fails
    text = _refused(
        "federated", ["fl.rounds=1", "fl.simulation.reuse_ray=false", "recipe.progress=false"], files, ledger_path
    )
    assert "could not start Ray" in text and "nothing was charged" in text


def test_audit_and_predict_refuse_a_broken_run_folder_with_one_line(files, ledger_path, capsys):
    from privtrain.audit import audit_run
    from privtrain.cli import main

    run_dir = privtrain.run("dp_sgd", TINY, output_dir=files / "run").output_dir
    before = _entries(ledger_path)
    assert main(["predict", str(run_dir), "data.csv", "--output", "missing/predictions.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "privtrain: error: predict --output missing/predictions.csv: the folder 'missing' does not exist; "
        "create it or write elsewhere."
    ]
    (run_dir / "metrics.json").write_text('{"accuracy": 0.9, ')  # cut short
    with pytest.raises(UserError, match=r"metrics.json \(edited since the ledger recorded it\)") as err:
        audit_run(run_dir, shadow_models=0)  # the evidence check comes first: the file differs from its record
    assert "\n" not in str(err.value)
    assert _entries(ledger_path) == before


def _read_only_mount_works(folder) -> bool:
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} {folder}",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


def test_a_read_only_working_directory_is_one_line_and_charges_nothing(tmp_path, ledger_path):
    """A real read-only folder (a read-only bind mount in a private mount namespace: root ignores permissions)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if not _read_only_mount_works(folder):
        pytest.skip("needs unshare and mount (a private mount namespace)")
    ledger.open(ledger_path).set_budget("digits", "example", 8.0, 1e-5)
    before = _entries(ledger_path)
    python = f'{sys.executable} -c \'import privtrain; privtrain.run("dp_sgd", ["recipe.epochs=1"])\''
    script = (
        f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} {folder} && cd {folder} && "
        f"{{ {sys.executable} -m privtrain.cli run dp_sgd {' '.join(TINY)}; echo cli=$?; "
        f"{python} 2>&1 | tail -1; }}"
    )
    env = {**os.environ, "PRIVTRAIN_LEDGER": str(ledger_path), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [
        "privtrain: error: the run's output folder (hydra.run.dir; the working directory by default): "
        "Read-only file system (outputs); run from (or write to) a writable folder."
    ], out.stderr
    assert "cli=2" in out.stdout
    assert "UserError: output directory" in out.stdout and "Read-only file system" in out.stdout  # the Python API
    assert _entries(ledger_path) == before
