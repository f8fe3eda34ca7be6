"""A trained run predicts on new rows with its own preprocessing: privtrain.load and privtrain predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TINY

import privtrain
from privtrain import data
from privtrain.errors import UserError


def test_load_predicts_what_the_run_evaluated(tmp_path, ledger_path):
    result = privtrain.run("dp_sgd", TINY, output_dir=tmp_path / "r")
    model = privtrain.load(result.output_dir)
    ds = data.load(data.DatasetSpec(loader="digits"))
    from privtrain.data.assign import held_out

    test = ds.frame[held_out(ds.frame, seed=0, test_size=0.2)]
    predicted = model.predict(test.drop(columns=["target"]))
    accuracy = float(np.mean(predicted.astype(int) == test["target"].to_numpy()))
    assert accuracy == pytest.approx(result.metrics["accuracy"], abs=1e-6)  # the same model, preprocessing (float32)
    proba = model.predict_proba(test.drop(columns=["target"]))
    assert proba.shape == (len(test), 10) and np.allclose(proba.sum(1), 1.0, atol=1e-5)


def test_predict_command_writes_predictions_for_a_csv(tmp_path, ledger_path, cli):
    rng = np.random.default_rng(0)
    x = rng.random((300, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": np.where(x[:, 0] > 0.5, "yes", "no")})
    frame.to_csv(tmp_path / "train.csv", index=False)
    schema = "+dataset.schema={a: {min: 0, max: 1}, b: {min: 0, max: 1}, label: {categories: [no, yes]}}"
    result = privtrain.run(
        "dp_sgd",
        [
            *TINY,
            "recipe.epochs=20",
            "recipe.batch_size=64",
            "dataset=csv",
            f"dataset.path={tmp_path / 'train.csv'}",
            "dataset.target=label",
            schema,
            "dataset.public_n=300",
        ],
        output_dir=tmp_path / "r",
    )
    frame.drop(columns=["label"]).head(50).to_csv(tmp_path / "new.csv", index=False)
    out = cli("predict", str(result.output_dir), str(tmp_path / "new.csv"))
    assert out.returncode == 0, out.stderr
    written = pd.read_csv(tmp_path / "new.predictions.csv")
    assert list(written.columns) == ["prediction", "p_no", "p_yes"] and len(written) == 50
    assert set(written["prediction"]) <= {"no", "yes"}
    agreement = np.mean(written["prediction"].to_numpy() == frame["label"].head(50).to_numpy())
    assert agreement > 0.7  # a simple threshold learnt under DP
    (result.output_dir / "checkpoint.pt").write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match the hash in the ledger"):
        privtrain.load(result.output_dir)
