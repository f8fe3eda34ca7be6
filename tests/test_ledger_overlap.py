"""Overlap by content from noisy sketches: the same people are linked, other people are not, and what is
stored holds no value."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from privtrain.ledger import columns as cols
from privtrain.ledger import overlap as ov
from privtrain.ledger import sketch

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def stored_of(frame, id_column=None, key=KEY, seed=0, eps=sketch.EPS_S):
    return ov.register(ov.read(frame, key, id_column), key, eps_s=eps, rng=np.random.default_rng(seed))


def overlap(frame, stored, id_column=None, key=KEY):
    return ov.compare(ov.read(frame, key, id_column), stored, key, source="src")


def linked(frame, stored, id_column=None):
    o = overlap(frame, stored, id_column)
    assert o is not None and o.linked, o
    return o


def not_linked(frame, stored, id_column=None):
    o = overlap(frame, stored, id_column)
    assert o is None or not o.linked, o
    return o


@pytest.fixture(scope="module")
def digits():
    return load_digits(as_frame=True).frame


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def digits_stored(digits):
    return stored_of(digits)


@pytest.fixture(scope="module")
def cancer_stored(cancer):
    return stored_of(cancer)


# --- same rows ---------------------------------------------------------------------------------------


def test_reordered_rows_and_columns_link_fully(digits, digits_stored):
    o = linked(digits.sample(frac=1.0, random_state=3)[digits.columns[::-1]], digits_stored)
    assert o.fraction_of_new >= 0.9 and o.fraction_of_known >= 0.9 and o.z > 10
    assert "about 100% of these rows belong to source `src` (about 100% of it;" in o.reason


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_round_trip_links(tmp_path, cancer, digits, cancer_stored, digits_stored, fmt):
    for name, frame, stored in [("cancer", cancer, cancer_stored), ("digits", digits, digits_stored)]:
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
            back = pd.read_csv(path)
        else:
            frame.to_parquet(path, index=False)
            back = pd.read_parquet(path)
        o = linked(back, stored)
        assert o.fraction_of_new >= 0.85


def test_integral_floats_code_like_ints():
    a = pd.DataFrame({"x": np.arange(40) % 7, "s": list("abcd") * 10})
    b = pd.DataFrame({"s": list("abcd") * 10, "x": (np.arange(40) % 7).astype(float)})
    va, vb = ov.read(a, KEY).views, ov.read(b, KEY).views
    assert np.array_equal(va[0].codes, vb[1].codes) and np.array_equal(va[1].codes, vb[0].codes)


def test_row_removed_subset_and_appended(digits, digits_stored):
    o = linked(digits.drop(index=digits.index[17]), digits_stored)
    assert o.fraction_of_new >= 0.85
    o = linked(digits.sample(frac=0.3, random_state=4), digits_stored)
    assert o.fraction_of_new >= 0.5 and o.fraction_of_known == pytest.approx(0.3 * o.fraction_of_new / 1.0, abs=0.05)
    r = np.random.default_rng(5)
    extra = pd.DataFrame({c: r.integers(0, 17, 3 * len(digits)).astype(float) for c in digits.columns})
    extra["target"] = r.integers(0, 10, len(extra))
    o = linked(pd.concat([digits, extra], ignore_index=True), digits_stored)
    assert o.fraction_of_new == pytest.approx(0.25, abs=0.08) and o.fraction_of_known >= 0.75


def test_tiny_tables_never_link_to_a_private_sketch(digits, digits_stored):
    """A one- or five-row membership test through the sketch says nothing: the free oracle is closed."""
    for n in (1, 5):
        o = overlap(digits.iloc[:n], digits_stored)
        assert o is None or not o.linked


# --- other column sets -------------------------------------------------------------------------------


def test_constant_column_removed_from_digits(digits, digits_stored):
    assert (digits["pixel_0_0"] == 0).all()
    o = linked(digits.drop(columns=["pixel_0_0"]), digits_stored)
    assert o.fraction_of_new >= 0.85
    o = linked(digits.drop(columns=["pixel_0_0"]).sample(frac=0.5, random_state=6), digits_stored)
    assert o.fraction_of_known == pytest.approx(0.5 * o.fraction_of_new, abs=0.05) and o.fraction_of_new >= 0.6


def test_cancer_columns_dropped_or_added(cancer, cancer_stored):
    dropped = cancer.drop(columns=list(cancer.columns[[0, 3, 7, 12, 20]]))
    o = linked(dropped, cancer_stored)
    assert o.columns == 26 and o.fraction_of_new >= 0.8
    o = linked(dropped.sample(frac=0.6, random_state=7), cancer_stored)
    assert o.fraction_of_new >= 0.7 and o.fraction_of_known <= 0.7
    o = linked(cancer.assign(ratio=cancer["mean area"] / cancer["mean radius"]), cancer_stored)
    assert o.columns == 31 and o.fraction_of_new >= 0.8


def test_declared_id_column_matches_by_its_values():
    r = np.random.default_rng(8)
    n = 1000
    people = pd.DataFrame({"id": r.permutation(10**6)[:n], "age": r.integers(18, 90, n), "f": r.choice(["a", "b"], n)})
    stored = stored_of(people, id_column="id")
    assert any(g["cols"] == [0] for g in stored.layout["groups"])  # the id column is a group of its own
    part = people.sample(frac=0.4, random_state=9)[["id", "age"]].assign(outcome=r.integers(0, 2, 400))
    o = linked(part, stored, id_column="id")
    assert o.fraction_of_new >= 0.8
    # matched by its values, not its name (renaming does not hide the people); undeclared, it is a number
    assert linked(part.rename(columns={"id": "pid"}), stored, id_column="pid").fraction_of_new >= 0.8
    not_linked(part.rename(columns={"id": "pid"}), stored)


# --- no false links ----------------------------------------------------------------------------------


def test_independent_draws_same_columns_not_linked(digits, digits_stored):
    r = np.random.default_rng(10)
    fake = pd.DataFrame(
        {
            c: r.integers(digits[c].min(), digits[c].max() + 1, len(digits)).astype(digits[c].dtype)
            for c in digits.columns
        }
    )
    not_linked(fake, digits_stored)
    not_linked(fake.drop(columns=["pixel_0_0"]), digits_stored)
    first, second = digits.iloc[:900], digits.iloc[900:]
    not_linked(second, stored_of(first))  # other images of the same digits


def test_noise_perturbed_copy_not_linked(cancer, cancer_stored):
    r = np.random.default_rng(11)
    features = cancer.columns.drop("target")
    noisy = cancer.copy()
    noisy[features] += r.normal(size=(len(cancer), len(features))) * (0.05 * cancer[features].std()).to_numpy()
    not_linked(noisy, cancer_stored)
    not_linked(noisy.drop(columns=list(features[:5])), cancer_stored)
    # the grid gate: the source's values lie on a grid, the noisy ones do not
    assert cols.grid_step(np.unique(cancer["mean radius"])) > 0 and cols.grid_step(np.unique(noisy["mean radius"])) == 0


def test_low_cardinality_tables_identify_nobody():
    r = np.random.default_rng(13)
    a = pd.DataFrame(r.integers(0, 2, (1000, 5)), columns=list("abcde"))
    b = pd.DataFrame(r.integers(0, 2, (1000, 5)), columns=list("abcde"))
    stored = stored_of(a)
    assert stored.layout["groups"] == []  # 32 patterns: no column group identifies anyone
    assert overlap(b, stored) is None and overlap(a, stored) is None


def test_no_shared_columns(cancer, digits_stored):
    not_linked(cancer, digits_stored)


# --- keys and storage ---------------------------------------------------------------------------------


def test_another_key_links_nothing(cancer, cancer_stored):
    other = ov.register(ov.read(cancer, OTHER_KEY), OTHER_KEY)
    assert ov.compare(ov.read(cancer, OTHER_KEY), other, OTHER_KEY).linked
    o = ov.compare(ov.read(cancer, OTHER_KEY), cancer_stored, OTHER_KEY)
    assert o is not None and not o.linked and abs(o.z) < 5
    with pytest.raises(ValueError):
        ov.read(cancer, b"short")


def _coarse(x: float, unit: float) -> bool:
    return abs(x / unit - round(x / unit)) < 1e-9


def test_what_is_stored_holds_no_value(cancer, cancer_stored):
    """The layout holds names, positions and coarse shapes only; the bits hold no raw word."""
    layout = json.loads(cancer_stored.layout_json())
    assert set(layout) == {"v", "n", "eps_s", "flip", "salt", "columns", "groups"}
    assert layout["n"] == 570.0 and layout["eps_s"] == sketch.EPS_S  # the row count to two digits
    for c in layout["columns"]:
        assert set(c) <= {"name", "pos", "null", "k", "grid", "cells", "grain", "shape", "zero"}
        assert all(_coarse(q, 0.05) for q in c.get("shape", []))  # standardised quantiles, to 0.05
        assert all(_coarse(b, 0.005) for b, _ in c.get("cells", []))  # cumulative shares, to 0.5%
        assert float(f"{c.get('grain', 0):.2g}") == c.get("grain", 0)  # a resolution, to two digits
    for g in layout["groups"]:
        assert set(g) == {"cols", "grid", "m", "collide"} and g["m"] & (g["m"] - 1) == 0
        assert g["collide"] == 0 or np.log2(g["collide"]) == round(np.log2(g["collide"]))
    raw = cancer.to_numpy(dtype=float).astype("<f8").tobytes()
    blob = cancer_stored.blob()
    assert not {blob[i : i + 8] for i in range(0, len(blob) - 7, 8)} & {raw[i : i + 8] for i in range(0, len(raw), 8)}


def test_each_registration_draws_fresh_noise(cancer):
    one, two = ov.register(ov.read(cancer, KEY), KEY), ov.register(ov.read(cancer, KEY), KEY)
    assert one.blob() != two.blob()
    flip = one.layout["flip"]
    assert flip == pytest.approx(1 / (1 + np.exp(sketch.EPS_S / len(one.layout["groups"]))))
    assert all(0.3 < b.mean() < 0.6 for b in one.bits)  # randomized response: about half the bits read 1
    assert ov.compare(ov.read(cancer, KEY), two, KEY).linked


def test_storage_round_trips(cancer_stored):
    back = ov.Stored.load(cancer_stored.layout_json(), cancer_stored.blob())
    assert back.layout == cancer_stored.layout
    assert all(np.array_equal(a, b) for a, b in zip(back.bits, cancer_stored.bits))
    with pytest.raises(ValueError):
        sketch.unpack(cancer_stored.blob() + b"x", [g["m"] for g in cancer_stored.layout["groups"]])
    assert sketch.digest("a", b"b") != sketch.digest("a", b"c")


def test_shares_in_messages_are_coarse(digits, digits_stored):
    o = linked(digits.sample(frac=0.37, random_state=1), digits_stored)
    assert re.fullmatch(
        r"about (100|\d0)% of these rows belong to source `src` \(about (100|\d0)% of it; "
        r"matched by content on \d+ shared columns\)",
        o.reason,
    ), o.reason
