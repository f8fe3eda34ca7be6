"""The attacker's test: a writer holding every key and every other row inverts the stored sketch.

Against the per-cell hashes privtrain stored before, enumerating each column's domain recovered 512 of
512 sampled rows. Against the noisy sketch the same attacker (tests/ledger_helpers/inversion.py) recovers
no row and no cell, and no candidate's likelihood ratio exceeds the stated bound e^EPS_S. The same attack
on a sketch stored without noise recovers nearly everything: the attack is real, the noise is what stops it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ledger_helpers.inversion import PRECISION, cells_attack, rows_attack
from ledger_helpers.patients import patients

from privtrain.ledger import overlap as ov
from privtrain.ledger import sketch

KEY = bytes(range(3, 35))


@pytest.fixture(scope="module")
def table():
    return patients(3000, seed=0)


@pytest.fixture(scope="module")
def outsiders():
    return patients(3000, seed=1)  # the same population, other people


@pytest.fixture(scope="module")
def noisy(table):
    return ov.register(ov.read(table, KEY), KEY, rng=np.random.default_rng(2))


@pytest.fixture(scope="module")
def clear(table):
    return ov.register(ov.read(table, KEY), KEY, eps_s=math.inf, rng=np.random.default_rng(2))


def test_no_row_is_recovered_and_the_bound_holds(table, outsiders, noisy):
    found = rows_attack(table, outsiders, noisy, KEY)
    assert found["pool"] == 6000 and found["recovered"] == 0, found
    assert found["max_ratio"] <= math.exp(sketch.EPS_S) * (1 + 1e-9), found
    # even with even prior odds, no membership is ever more likely than e^2 / (1 + e^2) = 0.88
    assert found["max_posterior"] <= math.exp(sketch.EPS_S) / (1 + math.exp(sketch.EPS_S)) + 1e-9 < PRECISION
    groups = noisy.layout["groups"]
    assert len(groups) * math.log((1 - noisy.layout["flip"]) / noisy.layout["flip"]) == pytest.approx(sketch.EPS_S)


def test_no_cell_is_recovered(table, noisy):
    found = cells_attack(table, noisy, KEY)
    assert found["cells"] >= 1000 and found["recovered"] == 0, found
    assert found["max_posterior_below_even_prior"] < PRECISION


def test_without_noise_the_same_attack_recovers_rows_and_cells(table, outsiders, clear):
    """The attack is real: a sketch without randomized response gives rows and cells away."""
    assert rows_attack(table, outsiders, clear, KEY)["recovered"] >= 2000
    assert cells_attack(table, clear, KEY, n_rows=40)["recovered"] >= 50
