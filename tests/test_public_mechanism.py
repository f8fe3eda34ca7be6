"""The attacker's test of a mechanism that must not depend on the private row count (issue 19, item 6).

Opacus' own ``make_private`` samples at ``1/ceil(n/batch)`` and divides by ``floor(n q)``: with batch
128, a table whose training split holds 128 rows runs q = 1 and divides by 128, its neighbour with 129
rows runs q = 0.5 and divides by 64. The update's scale then tells the two apart whatever the noise.
Here two tables that differ in one row, at the boundaries of that formula (and of delta's default),
must run the same mechanism: the same q, divisor, steps, noise, clipping and events, read off the
plan *and* off the optimizer, the sampler and the accountant the training really uses.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import privtrain
from privtrain import config, ledger, models, training
from privtrain.data.assign import held_out
from privtrain.privacy.opacus_parts import make_private
from privtrain.recipes import dp_sgd as recipe

SCHEMA = "dataset.schema={a: {min: 0, max: 1}, b: {min: 0, max: 1}, label: {categories: [0, 1]}}"
# (training rows read, batch, declared public size): n -> n + 1 crosses a multiple of the batch (q and the
# divisor jump under Opacus' formula), or 10,000 training rows (delta's default drops from 1e-5 to 1e-6).
BOUNDARIES = [(128, 128, 160), (256, 128, 300), (100, 50, 130)]


def _neighbours(tmp_path, n_train: int) -> tuple:
    """Two CSV files that differ in one row: the keyed split gives the first ``n_train`` training rows,
    the second (the first plus one row) ``n_train + 1``."""
    rng = np.random.default_rng(n_train)
    pool = pd.DataFrame(
        {
            "a": rng.uniform(0, 1, 3 * n_train).round(4),
            "b": rng.uniform(0, 1, 3 * n_train).round(4),
            "label": rng.integers(0, 2, 3 * n_train),
        }
    )
    test = held_out(pool, seed=0, test_size=0.2)
    train, evaluation = pool[~test], pool[test]
    first = pd.concat([train.iloc[:n_train], evaluation.iloc[: n_train // 4]])
    second = pd.concat([first, train.iloc[n_train : n_train + 1]])
    paths = tmp_path / f"d{n_train}.csv", tmp_path / f"d{n_train}plus.csv"
    first.to_csv(paths[0], index=False)
    second.to_csv(paths[1], index=False)
    return paths


def _planned(path, batch: int, public_n: int, *extra: str):
    overrides = [
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=label",
        SCHEMA,
        f"dataset.public_n={public_n}",
        f"recipe.batch_size={batch}",
        f"recipe.max_physical_batch_size={batch}",
        "recipe.epochs=2",
        "recipe.progress=false",
        "privacy.target_epsilon=2",
        *extra,
    ]
    return recipe.plan(config.settings("dp_sgd", config.compose("dp_sgd", overrides)))


def _opacus_rate(n_rows: int, batch: int) -> float:
    """What Opacus' make_private would have sampled at (its DPDataLoader: 1 / len(loader))."""
    import torch
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import DataLoader, TensorDataset

    rows = TensorDataset(torch.zeros(n_rows, 2))
    return DPDataLoader.from_data_loader(DataLoader(rows, batch_size=batch)).sample_rate


def _what_training_uses(p) -> dict:
    """The private parts the training builds for this plan, and an accountant after a real training."""
    splits = recipe._splits(p)
    model = models.build(p.settings.model, n_inputs=splits.x_train.shape[1], n_classes=2, image_shape=None)
    optimizer = training.make_optimizer("adam", model.parameters(), 0.05, 0.0)
    private = make_private(
        model,
        optimizer,
        splits.x_train,
        splits.y_train,
        p.dp,
        p.train,
        resume=None,
        reproducible_noise_from=None,
        device="cpu",
        world=None,
    )
    outcome = training.train(
        models.build(p.settings.model, n_inputs=splits.x_train.shape[1], n_classes=2, image_shape=None),
        splits.x_train,
        splits.y_train,
        p.train,
        dp=p.dp,
        report_epsilon=False,
    )
    return {
        "rows read": splits.n_train,
        "divisor": private.optimizer.expected_batch_size,
        "noise": private.optimizer.noise_multiplier,
        "clip": private.optimizer.max_grad_norm,
        "sampler q": private.loader.batch_sampler.sample_rate,
        "sampler steps": len(private.loader.batch_sampler),
        "steps taken": outcome.steps,
        "accountant": [tuple(h) for h in outcome.accountant_state["history"]],
    }


@pytest.mark.parametrize("n_train,batch,public_n", BOUNDARIES)
def test_neighbouring_tables_run_the_same_mechanism(tmp_path, n_train, batch, public_n):
    first, second = (_planned(path, batch, public_n) for path in _neighbours(tmp_path, n_train))
    # The boundary is real: the rows read differ by one, and Opacus' own formula would change q there.
    assert _opacus_rate(n_train, batch) != _opacus_rate(n_train + 1, batch)
    used = [_what_training_uses(p) for p in (first, second)]
    assert (used[0].pop("rows read"), used[1].pop("rows read")) == (n_train, n_train + 1)
    # One mechanism: the plan ...
    assert first.dp == second.dp and first.access.mechanisms == second.access.mechanisms
    assert first.train == second.train and first.dp.events == second.dp.events
    # ... and what the optimizer, the sampler and the accountant actually used.
    assert used[0] == used[1]
    n_public = round(public_n * 0.8)
    q, steps = batch / n_public, 2 * -(-n_public // batch)
    assert (
        used[0]["divisor"] == batch and used[0]["sampler q"] == pytest.approx(q) and used[0]["sampler steps"] == steps
    )
    assert used[0]["steps taken"] == steps
    assert used[0]["accountant"] == [(first.dp.noise_multiplier, first.dp.sample_rate, steps)]


def test_delta_and_noise_do_not_move_at_ten_thousand_rows(tmp_path):
    first, second = (_planned(path, 128, 12_600) for path in _neighbours(tmp_path, 10_000))
    assert [len(recipe._splits(p).y_train) for p in (first, second)] == [10_000, 10_001]
    assert first.dp == second.dp and first.dp.delta == 1e-6  # delta from the public 10,080 rows, not 10,000 vs 10,001


def test_dp_without_a_public_size_is_refused_with_one_line_and_nothing_charged(tmp_path, ledger_path, cli):
    path, _ = _neighbours(tmp_path, 128)
    args = [
        "run",
        "dp_sgd",
        "dataset=csv",
        f"dataset.path={path}",
        "dataset.target=label",
        SCHEMA,
        "recipe.batch_size=64",
        "recipe.epochs=1",
        "recipe.progress=false",
    ]
    out = cli(*args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "dataset.public_n is not set" in out.stderr and "dataset.public_n=3000" in out.stderr
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []
    # privacy=none keeps no guarantee, so it needs no public size.
    assert cli(*args, "privacy=none", "ledger.allow_non_private=true").returncode == 0


def test_amp_with_ghost_clipping_is_refused_before_anything_is_charged(tmp_path):
    from privtrain.errors import UserError

    path, _ = _neighbours(tmp_path, 128)
    with pytest.raises(UserError, match="recipe.amp=true cannot be combined with recipe.grad_sample_mode=ghost"):
        _planned(path, 64, 160, "recipe.amp=true", "recipe.grad_sample_mode=ghost")


def test_local_dp_clients_run_the_same_mechanism_on_neighbouring_tables(tmp_path):
    from privtrain.federated import planning, task

    plans = []
    for path in _neighbours(tmp_path, 400):
        s = config.settings(
            "federated",
            config.compose(
                "federated",
                [
                    "privacy=dp",
                    "dataset=csv",
                    f"dataset.path={path}",
                    "dataset.target=label",
                    SCHEMA,
                    "dataset.public_n=625",
                    "fl.num_clients=4",
                    "fl.rounds=3",
                    "fl.batch_size=16",
                ],
            ),
        )
        population = task.build_population(task.load_dataset(s.dataset, s.fl), s.fl)
        plans.append((population, planning.plan(s.privacy, s.model, s.fl, population)[1]))
    (first_pop, first), (second_pop, second) = plans
    assert sum(first_pop.train_sizes()) + 1 == sum(second_pop.train_sizes())  # one client holds one row more
    assert first == second  # sizes, q, steps, noise, epsilon
    assert first.sizes == (round(625 * 0.8 * 0.8 / 4),) * 4
    assert {first.client_dp(k) for k in range(4)} == {second.client_dp(k) for k in range(4)}
    assert first.sample_rate(0) == pytest.approx(16 / first.sizes[0]) and first.events == second.events


@pytest.mark.slow
def test_the_committed_charge_and_the_card_state_the_public_mechanism(tmp_path, ledger_path):
    runs = []
    for i, path in enumerate(_neighbours(tmp_path, 128)):
        runs.append(
            privtrain.run(
                "dp_sgd",
                [
                    "dataset=csv",
                    f"dataset.path={path}",
                    "dataset.target=label",
                    SCHEMA,
                    "dataset.public_n=200",
                    "recipe.batch_size=128",
                    "recipe.epochs=2",
                    "recipe.progress=false",
                    "privacy.target_epsilon=2",
                    f"dataset.source=neighbour{i}",
                ],
                output_dir=tmp_path / f"r{i}",
            )
        )
    dp = [json.loads((r.output_dir / "metrics.json").read_text())["dp"] for r in runs]
    assert dp[0] == dp[1] and dp[0]["expected_batch_size"] == 128 and dp[0]["public_training_rows"] == 160
    assert runs[0].guarantee.events == runs[1].guarantee.events
    assert runs[0].guarantee.epsilon == runs[1].guarantee.epsilon
    committed = {
        e.run_id: e.events_json
        for e in ledger.open(ledger_path).entries()
        if e.status == "committed" and e.run_id in {r.ledger["entry"] for r in runs}
    }
    assert len(committed) == 2 and len(set(committed.values())) == 1
    assert "PoissonSampledDpEvent" in next(iter(committed.values()))
    assert any("add/remove-one-example adjacency" in n for n in runs[0].guarantee.notes)
    assert "expected batch size 128" in (runs[0].output_dir / "model_card.md").read_text()


def test_a_local_dp_client_without_rows_still_takes_its_noisy_steps(flower_identity, tmp_path):
    """Whether a client holds rows must not show: it trains its public steps (zero sums, full noise)."""
    import torch
    from opacus.accountants import create_accountant
    from test_federated import _context, _job, _train_message

    from privtrain.federated import task
    from privtrain.federated.client_app import _state, make_client_app

    run, job = _job(tmp_path, "privacy=dp", "fl.num_clients=1500", "fl.rounds=1", "fl.local_epochs=1")
    empty = next(k for k in range(job.num_clients) if len(job.client(k).y_train) == 0)
    full = next(k for k in range(job.num_clients) if len(job.client(k).y_train) > 0)
    assert job.local.client_dp(empty) == job.local.client_dp(full) and job.weight(empty) == job.weight(full) > 0
    model = task.build_model(run.model, job.shape)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    context = _context(empty)
    reply = make_client_app(job)(_train_message(model, 1), context)
    moved = reply.content["arrays"].to_torch_state_dict()
    assert any(not torch.equal(moved[k], sent[k]) for k in sent)  # noise moved the model
    kept = create_accountant("prv")
    kept.load_state_dict(_state(context)["accountant"])
    assert [tuple(h) for h in kept.history] == [
        (job.local.noise_multiplier, job.local.sample_rate(empty), job.local.steps_per_round(empty))
    ]
