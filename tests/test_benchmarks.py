"""The trade-off benchmark's smoke version runs and writes sane outputs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
def test_tradeoff_quick_writes_csv_table_and_plots(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRIVTRAIN_LEDGER", str(tmp_path / "unused.db"))  # restored after: main() sets its own
    import tradeoff

    out = tradeoff.main(["--quick", "--out", str(tmp_path / "out")])
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.columns) == tradeoff.COLUMNS
    assert set(trials.method) == set(tradeoff.METHODS)
    assert trials.accuracy.between(0.0, 1.0).all()
    assert (trials[trials.epsilon.apply(math.isfinite)].method.nunique()) == len(tradeoff.METHODS) - 1
    assert (out / "pareto_digits.png").stat().st_size > 10_000
    table = (out / "table_digits.md").read_text()
    assert "± " in table and "dp_sgd (example)" in table and "federated central (client)" in table
    ledger = (out / "ledger.json").read_text()
    assert "digits" in ledger and "client" in ledger  # the sweep's composed ε, per unit
    assert (out / "ledger.db").is_file() and not (tmp_path / "unused.db").exists()  # its own ledger
    sys.modules.pop("tradeoff", None)
