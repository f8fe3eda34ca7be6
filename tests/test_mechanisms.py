"""Mechanisms whose guarantee holds: secret noise (replay attacks fail), neighbouring splits, honest reports.

Each test plays the attacker of the first release's audit: it knows the config (and so ``seed``), the
data with and without a target row, and privtrain's code, and tries to reproduce what a run released.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY

import privtrain
from privtrain import data, ledger, models, training
from privtrain.errors import UserError
from privtrain.privacy import dp_sgd as dp_plan
from privtrain.privacy.randomness import numpy_generator


def _weights(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def _replay_dp_sgd(result, frame: pd.DataFrame | None = None):
    """The attacker: retrain with the run's public settings and noise derived from its seed."""
    dp = _dp_of(result)  # the mechanism's public parameters, as metrics.json states them (the clipping mode too)
    s_train = training.TrainSettings(
        epochs=1,
        batch_size=256,
        max_physical_batch_size=256,
        optimizer="adam",
        lr=0.05,
        ema=0.95,
        progress=False,
        grad_sample_mode=dp["grad_sample_mode"],
    )
    ds = data.load(data.DatasetSpec(loader="digits"))
    if frame is not None:
        ds = data.Dataset(ds.source, frame.reset_index(drop=True), ds.target, ds.schema, ds.fingerprint, ds.image_shape)
    splits = data.split(ds, seed=0, test_size=0.2)
    plan = dp_plan.DpSgdPlan(dp["noise_multiplier"], dp["sample_rate"], dp["steps"], 1e-5, 0.5, "prv", math.nan)
    models.seed_everything(0)
    model = models.build(
        models.ModelSpec("logreg", (), "tanh", (), 1), n_inputs=64, n_classes=10, image_shape=(1, 8, 8)
    )
    out = training.train(
        model, splits.x_train, splits.y_train, s_train, dp=plan, seed=0, reproducible_noise_from=0, report_epsilon=False
    )
    return out.model.state_dict()


def test_dp_sgd_noise_cannot_be_replayed_from_the_public_seed(tmp_path, ledger_path):
    first = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "a")
    second = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "b")
    assert not _same(_weights(first.output_dir), _weights(second.output_dir))  # same seed, fresh secret noise
    full = data.load(data.DatasetSpec(loader="digits")).frame
    with_row, without_row = _replay_dp_sgd(first), _replay_dp_sgd(first, full.iloc[1:])
    released = _weights(first.output_dir)
    assert not _same(released, with_row) and not _same(released, without_row)  # membership is not readable
    # The attack works when the noise does come from the seed: the debugging switch voids the guarantee.
    debug = privtrain.run("dp_sgd", [*TINY, "reproducible_noise=true"], output_dir=tmp_path / "d")
    assert _same(_weights(debug.output_dir), _replay_dp_sgd(debug))
    assert math.isinf(debug.guarantee.epsilon) and "reproducible_noise=true" in debug.guarantee.notes[-1]
    committed = [e for e in ledger.open(ledger_path).entries() if e.status == "committed"]
    assert committed[-1].events_json == '[{"type":"NonPrivateDpEvent"}]'


def test_the_secret_noise_seed_is_written_nowhere(tmp_path, ledger_path, monkeypatch):
    from privtrain.privacy import randomness

    drawn = []
    real = randomness.secret_seed
    monkeypatch.setattr(randomness, "secret_seed", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    run = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "r")
    assert len(drawn) == 2  # one for the noise, one for the Poisson sampling
    ledger_files = ledger_path.parent.glob(ledger_path.name + "*")  # the database and its WAL
    written = b"".join(p.read_bytes() for p in [*run.output_dir.rglob("*"), *ledger_files] if p.is_file())
    for seed in drawn:
        for form in (str(seed), f"{seed:x}", seed.to_bytes(8, "little"), seed.to_bytes(8, "big")):
            assert (form.encode() if isinstance(form, str) else form) not in written


def test_dp_copula_rows_cannot_be_replayed_from_the_public_seed(tmp_path, ledger_path):
    from privtrain.synthetic import dp_copula
    from privtrain.synthetic.source import dp_domain, load_source, split

    args = ["dataset=wine", "synth=dp_gaussian_copula", "synth.epsilon=3", "synth.num_rows=40"]

    def released(run):
        return pd.read_csv(run.output_dir / "synthetic.csv")

    def replay(run, drop_first_row: bool):
        real = load_source(data.DatasetSpec(loader="wine"), need_target=False)
        train, _ = split(real, seed=0, test_size=0.2)
        train = train.iloc[1:] if drop_first_row else train
        domain, _ = dp_domain(real, "dp_gaussian_copula", None)
        plan = dp_copula.DpCopulaPlan(**{k: v for k, v in run.result_dp.items()})
        model = dp_copula.fit(train, domain, plan, rng=numpy_generator(0, "dp-copula"))
        return model.sample(40, seed=1)

    run = privtrain.run("synthetic", args, output_dir=tmp_path / "a")
    run.result_dp = _dp_of(run)
    rows = released(run)
    for drop in (False, True):
        attempt = replay(run, drop)
        assert not np.allclose(rows.to_numpy(float), attempt[rows.columns].to_numpy(float), atol=1e-6)
    debug = privtrain.run("synthetic", [*args, "reproducible_noise=true"], output_dir=tmp_path / "d")
    debug.result_dp = _dp_of(debug)
    assert np.allclose(released(debug).to_numpy(float), replay(debug, False)[released(debug).columns].to_numpy(float))
    assert math.isinf(debug.guarantee.epsilon)


def _dp_of(run) -> dict:
    import json

    return json.loads((run.output_dir / "metrics.json").read_text())["dp"]


def test_removing_a_row_changes_the_training_set_by_that_row_only():
    ds = data.load(data.DatasetSpec(loader="breast_cancer"))
    for drop in (0, 100, 400):
        smaller = data.Dataset(
            ds.source,
            ds.frame.drop(index=drop).reset_index(drop=True),
            ds.target,
            ds.schema,
            ds.fingerprint,
            ds.image_shape,
        )
        full, less = data.split(ds, seed=3, test_size=0.2), data.split(smaller, seed=3, test_size=0.2)
        a = {tuple(r) for r in np.c_[full.x_train, full.y_train]}
        b = {tuple(r) for r in np.c_[less.x_train, less.y_train]}
        assert b <= a and len(a - b) <= 1  # at most the removed row left the training set
        assert len(full.y_test) - len(less.y_test) in (0, 1)


def test_reports_that_read_real_rows_are_off_for_the_dp_synthesizer_and_labelled_when_on(tmp_path, ledger_path):
    off = privtrain.run("synthetic", ["dataset=wine", "synth=dp_gaussian_copula"], output_dir=tmp_path / "off")
    assert "quality_score" not in off.metrics and "tstr_accuracy" not in off.metrics
    assert "Non-DP release" not in (off.output_dir / "report.md").read_text()
    on = privtrain.run(
        "synthetic", ["dataset=wine", "synth=dp_gaussian_copula", "synth.report=true"], output_dir=tmp_path / "on"
    )
    report = (on.output_dir / "report.md").read_text()
    assert "Non-DP release" in report.split("## PII")[0]  # at the top, before any number
    import json

    assert json.loads((on.output_dir / "metrics.json").read_text())["non_dp_releases"] == ["quality", "privacy"]


def test_errors_never_echo_values_read_from_the_rows(tmp_path, ledger_path):
    secret = "PATIENT-7731-HIV"
    frame = pd.DataFrame({"x": np.linspace(0, 1, 60), "y": ["a", "b"] * 29 + [secret, "a"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(UserError) as err:
        privtrain.run(
            "dp_sgd",
            [
                "dataset=csv",
                f"dataset.path={tmp_path / 'd.csv'}",
                "dataset.target=y",
                "+dataset.schema={x: {min: 0, max: 1}, y: {categories: [a, b]}}",
                *TINY,
            ],
            output_dir=tmp_path / "r",
        )
    # neither the value nor how many rows hold one: a count would be a fact about the private rows
    assert secret not in str(err.value) and "some rows have a target label outside the declared classes" in str(
        err.value
    )
    assert not any(ch.isdigit() for ch in str(err.value).split("classes")[0])
    assert not ledger_path.exists() or ledger.open(ledger_path).entries() == []  # refused before any charge


def test_gdp_headline_is_an_upper_bound(tmp_path, ledger_path):
    from privtrain.privacy.events import epsilon_pld

    result = privtrain.run("dp_sgd", [*TINY, "privacy.accountant=gdp"], output_dir=tmp_path / "r")
    g = result.guarantee
    assert g.accountant == "pld" and g.epsilon >= epsilon_pld(list(g.events), g.delta) - 1e-9
    assert any("gdp accountant" in n and "reported epsilon=" in n for n in g.notes)


@pytest.mark.slow
def test_resume_keeps_the_guarantee_honest_and_refuses_mismatches(tmp_path, ledger_path):
    baseline = privtrain.run("dp_sgd", [*TINY, "privacy=none"], output_dir=tmp_path / "np")
    resumed = privtrain.run(
        "dp_sgd", [*TINY, f"resume={baseline.output_dir / 'checkpoint.pt'}"], output_dir=tmp_path / "r"
    )
    assert math.isinf(resumed.guarantee.epsilon) and any("trained without DP" in n for n in resumed.guarantee.notes)
    n_entries = len(ledger.open(ledger_path).entries())
    with pytest.raises(UserError, match="resume: .* holds a different model"):
        privtrain.run(
            "dp_sgd", [*TINY, "model=mlp", f"resume={baseline.output_dir / 'checkpoint.pt'}"], output_dir=tmp_path / "x"
        )

    class Exploit:  # a crafted checkpoint: loading it with pickle would run code
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    torch.save({"model": Exploit(), "meta": {}}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="must be the checkpoint.pt of a privtrain run whose ledger recorded it"):
        privtrain.run("dp_sgd", [*TINY, f"resume={tmp_path / 'evil.pt'}"], output_dir=tmp_path / "y")
    swapped = baseline.output_dir / "checkpoint.pt"
    torch.save({"model": Exploit(), "meta": {}}, swapped)  # swapped in a recorded run directory
    with pytest.raises(UserError, match="does not match the hash its run's ledger entry recorded"):
        privtrain.run("dp_sgd", [*TINY, f"resume={swapped}"], output_dir=tmp_path / "z")
    assert not (tmp_path / "pwned").exists()
    assert len(ledger.open(ledger_path).entries()) == n_entries  # nothing charged by the refusals
