"""Budgets that follow people: user-level client budgets key on the users, not on partition settings; a
checkpoint resumes only into the ledger that charged it; a policy can pin the project's ledger."""

from __future__ import annotations

import pytest

import privtrain
from privtrain import config, ledger
from privtrain.errors import BudgetExceeded
from privtrain.federated import task

USERS = 40
FL_FAST = ["fl.rounds=1", "fl.local_epochs=1", "recipe.progress=false"]


def _clinic(path, *, extra_rows: int = 0, drop: int = 0):
    """Digits rows, each held by one of 40 users (the ``patient`` column): a user-level federated table."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame.iloc[: 600 + extra_rows].copy()
    frame.insert(0, "patient", [f"p{i % USERS:03d}" for i in range(len(frame))])
    frame["region"] = [f"r{i % 4}" for i in range(len(frame))]
    frame = frame.iloc[drop:]
    frame.to_csv(path, index=False)
    decl = ", ".join(f"{c}: {{min: 0, max: 16}}" for c in frame.columns if c.startswith("pixel"))
    return [
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=target",
        "dataset.source=clinic",
        "dataset.drop=[region]",
        f"dataset.schema={{{decl}, target: {{categories: [0,1,2,3,4,5,6,7,8,9]}}}}",
    ]


def _key(*overrides: str) -> str:
    s = config.settings("federated", config.compose("federated", list(overrides)))
    return task.build_population(task.load_dataset(s.dataset, s.fl), s.fl).key


def test_a_column_partitions_key_is_its_users_not_its_settings(tmp_path):
    data = _clinic(tmp_path / "clinic.csv")
    users = [*data, "fl.partition=column", "fl.client_column=patient"]
    base = _key(*users)
    for changed in (
        ["fl.partition_seed=1"],
        ["fl.partition_seed=7", "fl.client_test_size=0.3"],
        ["dataset.test_size=0.3"],
        ["seed=3"],
    ):
        assert _key(*users, *changed) == base, changed
    # another version of the table (rows added, rows dropped) holds the same users
    more = _clinic(tmp_path / "more.csv", extra_rows=200)
    fewer = _clinic(tmp_path / "fewer.csv", drop=50)
    assert _key(*more, "fl.partition=column", "fl.client_column=patient") == base
    assert _key(*fewer, "fl.partition=column", "fl.client_column=patient") == base
    # other clients (sites instead of patients) are another population; so are the iid groups of any seed
    assert _key(*data, "fl.partition=column", "fl.client_column=region", "dataset.drop=[patient]") != base
    assert _key(*data, "dataset.drop=[patient,region]") != _key(
        *data, "dataset.drop=[patient,region]", "fl.partition_seed=1"
    )


def test_a_user_level_budget_is_not_reset_by_a_new_partition_seed(tmp_path, ledger_path):
    """The attacker's view: the users' budget is spent; another partition seed or local test share must
    not give the same users a fresh one."""
    users = [
        *_clinic(tmp_path / "clinic.csv"),
        "fl.partition=column",
        "fl.client_column=patient",
        "privacy=central",
        "privacy.target_epsilon=2",
        *FL_FAST,
    ]
    plan = privtrain.run("federated", [*users, "ledger.plan_only=true"], output_dir=tmp_path / "plan")
    scope = plan.dataset["population"]["key"]
    book = ledger.open(ledger_path)
    book.set_budget("clinic", "client", 1.0, 1e-5, scope=scope)  # below one run's ε = 2
    for changed in (
        ["fl.partition_seed=1"],
        ["fl.client_test_size=0.3"],
        ["fl.partition_seed=2", "dataset.test_size=0.3"],
    ):
        with pytest.raises(BudgetExceeded, match=r"client level"):
            privtrain.run("federated", [*users, *changed], output_dir=tmp_path / "x")
    assert not [e for e in book.entries() if e.status in ("reserved", "committed")]


# --- a checkpoint resumes only into the ledger that charged it -------------------------------------


TINY = ["recipe.epochs=1", "recipe.progress=false", "recipe.batch_size=256", "recipe.max_physical_batch_size=256"]


def test_a_checkpoint_names_its_ledger_and_resumes_only_there(tmp_path, ledger_path):
    import shutil

    import torch

    from privtrain.artifacts import checkpoint_ledger
    from privtrain.errors import UserError

    book = ledger.open(ledger_path)
    book.set_budget("digits", "example", 20.0, 1e-5)  # the project's ledger has a history, hence an identity
    book.close()
    fork = tmp_path / "fork.db"
    shutil.copy(ledger_path, fork)  # a copy shares the identity: the commit check must tell them apart
    book = ledger.open(ledger_path)
    assert ledger.open(fork).identity() == book.identity() is not None
    first = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "a")
    ckpt = first.output_dir / "checkpoint.pt"
    meta = torch.load(ckpt, weights_only=True)["meta"]
    assert meta["ledger"] == {"id": book.identity(), "run_id": first.ledger["entry"]}

    other = tmp_path / "other.db"
    for target in (other, fork):  # a throwaway ledger, and a copy of the project's made before the run
        with pytest.raises(UserError, match=r"^resume: .* was charged to another ledger .*nothing was charged") as info:
            privtrain.run("dp_sgd", [*TINY, f"resume={ckpt}", f"ledger.path={target}"], output_dir=tmp_path / "x")
        assert "\n" not in str(info.value) and not (tmp_path / "x").exists()
        assert [e.status for e in ledger.open(target).entries()] in ([], ["budget"])  # nothing charged there
    with pytest.raises(UserError, match=r"was charged to ledger .* not to this run's ledger"):
        checkpoint_ledger.require_same_ledger(ckpt, dict(meta, ledger={"id": "f" * 64}), str(ledger_path))

    spent = book.spent("digits")
    second = privtrain.run("dp_sgd", [*TINY, f"resume={ckpt}"], output_dir=tmp_path / "b")  # its own ledger: fine
    assert len(second.guarantee.events) == 2 and ledger.open(ledger_path).spent("digits") > spent


# --- a policy pins the project's ledger -----------------------------------------------------------


def _pinned_policy(ledger_path, anchor: str | None = None) -> str:
    book = ledger.open(ledger_path)
    count, digest = book.head()
    pin = f'ledger:\n  id: {book.identity()}\n  anchor: "{anchor or f"{count}:{digest}"}"\n'
    return pin + "rules:\n  - name: every-source\n    max_epsilon_per_run: 5\n"


@pytest.fixture
def pinned(tmp_path, ledger_path):
    """The project's ledger (with a first entry), a policy beside it that pins it, and a throwaway ledger's path."""
    ledger.open(ledger_path).set_budget("digits", "example", 20.0, 1e-5)
    policy_file = ledger_path.parent / "policy.yaml"
    policy_file.write_text(_pinned_policy(ledger_path))
    throwaway = tmp_path / "elsewhere" / "ledger.db"
    throwaway.parent.mkdir()
    return policy_file, throwaway


def test_a_pinned_policy_refuses_a_run_on_another_ledger_before_anything_is_charged(
    tmp_path, ledger_path, capsys, pinned
):
    from privtrain.cli import main
    from privtrain.errors import UserError

    policy_file, throwaway = pinned
    with pytest.raises(
        UserError, match=r"pins the project's ledger .* is empty: run with the project's ledger"
    ) as info:
        privtrain.run(
            "dp_sgd", [*TINY, f"ledger.path={throwaway}", f"ledger.policy={policy_file}"], output_dir=tmp_path / "x"
        )
    assert "\n" not in str(info.value) and ledger.open(throwaway).entries() == []
    assert main(["ledger", "id", "--path", str(ledger_path)]) == 0
    assert ledger.open(ledger_path).identity() in capsys.readouterr().out

    # a run on the project's ledger passes the pin (identity and anchor), and its release says so
    home = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "home")
    assert main(["release", str(home.output_dir)]) == 0
    assert "pass  project ledger: charged to the ledger policy.yaml pins" in capsys.readouterr().out


def test_release_refuses_a_run_charged_to_a_throwaway_ledger(tmp_path, ledger_path, capsys, pinned):
    from privtrain.cli import main

    policy_file, throwaway = pinned
    away = privtrain.run("dp_sgd", [*TINY, f"ledger.path={throwaway}"], output_dir=tmp_path / "away")  # no policy there
    entries = len(ledger.open(throwaway).entries())
    assert main(["release", str(away.output_dir), "--policy", str(policy_file)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  project ledger: policy policy.yaml pins the project's ledger" in out and "is another (id" in out
    assert not (away.output_dir / "release.json").exists() and len(ledger.open(throwaway).entries()) == entries


def test_a_pinned_anchor_the_ledger_does_not_extend_blocks_the_release(tmp_path, ledger_path, capsys):
    from privtrain.cli import main

    ledger.open(ledger_path).set_budget("digits", "example", 20.0, 1e-5)
    (ledger_path.parent / "policy.yaml").write_text(_pinned_policy(ledger_path, anchor=f"3:{'ab' * 32}"))
    run = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "run")  # the identity matches; the anchor is fake
    assert main(["release", str(run.output_dir)]) == 1
    assert "FAIL  project ledger: the ledger" in capsys.readouterr().out


@pytest.mark.parametrize(
    "pin, match",
    [
        ("ledger: {id: abc}", r"ledger\.id='abc' is not a ledger id"),
        (f"ledger: {{id: {'a' * 64}, anchor: 'x:y'}}", r"ledger\.anchor='x:y' is not a head"),
        (f"ledger: {{id: {'a' * 64}, path: /x}}", r"unknown key 'path'"),
        ("ledger: [1]", r"`ledger` must be a mapping"),
    ],
)
def test_a_bad_ledger_pin_is_one_line(tmp_path, pin, match):
    from privtrain import policy
    from privtrain.errors import UserError

    file = tmp_path / "policy.yaml"
    file.write_text(pin + "\nrules: []\n")
    with pytest.raises(UserError, match=match) as info:
        policy.load(file)
    assert "\n" not in str(info.value)
