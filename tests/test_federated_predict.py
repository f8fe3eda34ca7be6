"""A federated run's final global model predicts like a dp_sgd run's: privtrain.load and privtrain predict.

Slow (a Flower simulation on Ray): `pytest --slow`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_federated_e2e import TINY as SIMULATION

import privtrain
from privtrain import config, data
from privtrain.data.assign import held_out
from privtrain.errors import UserError

pytestmark = pytest.mark.slow

# The smallest simulation the end-to-end tests use, without noise, so the model is a learnt one (central DP at this
# size can leave it near chance, which proves nothing here).
TINY = [*SIMULATION, "privacy=none", "ledger.allow_non_private=true"]


def test_a_federated_run_loads_and_predicts_what_it_evaluated(tmp_path, ledger_path, cli):
    result = privtrain.run("federated", TINY, output_dir=tmp_path / "run")
    record = json.loads((result.output_dir / "run.json").read_text())
    assert record["outputs"] == {"model": "final_model.pt"} and record["schema"]["kind"] == "table"
    s = config.settings("federated", config.compose("federated", TINY))
    ds = data.load(s.dataset)
    test = ds.frame[held_out(ds.frame, seed=s.fl.partition.seed, test_size=s.fl.test_size)]  # the server's split
    features = test.drop(columns=[ds.target])

    model = privtrain.load(result.output_dir)
    predicted = model.predict(features).astype(int)
    accuracy = float(np.mean(predicted == test[ds.target].to_numpy()))
    assert accuracy == pytest.approx(result.metrics["accuracy"], abs=1e-6)  # the same model and preprocessing
    assert accuracy > 0.5 and len(set(predicted)) > 5  # a learnt model, not a constant (10 classes)

    features.to_csv(tmp_path / "rows.csv", index=False)
    out = cli("predict", str(result.output_dir), str(tmp_path / "rows.csv"))
    assert out.returncode == 0, out.stderr
    written = pd.read_csv(tmp_path / "rows.predictions.csv")
    assert len(written) == len(test) and (written["prediction"].to_numpy() == predicted).all()

    # the attacker swaps the global model for other weights: refused, never loaded
    (result.output_dir / "final_model.pt").write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match the hash in the ledger"):
        privtrain.load(result.output_dir)
    out = cli("predict", str(result.output_dir), str(tmp_path / "rows.csv"))
    assert out.returncode == 2 and "does not match the hash in the ledger" in out.stderr
