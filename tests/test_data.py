"""Data loading, public schemas, fingerprints and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from privtrain import data
from privtrain.data import DatasetSpec
from privtrain.data.fingerprint import fingerprint_frame
from privtrain.errors import UserError


@pytest.mark.parametrize(
    "name,n,n_features,n_classes", [("digits", 1797, 64, 10), ("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3)]
)
def test_builtin_datasets_load_offline_with_public_schema(name, n, n_features, n_classes):
    ds = data.load(DatasetSpec(name))
    assert ds.n_rows == n and len(ds.features) == n_features
    assert ds.schema.source == "builtin" and not ds.schema.inferred
    assert len(ds.schema.classes) == n_classes
    splits = data.split(ds, seed=0, test_size=0.2)
    assert splits.x_train.dtype == np.float32
    assert 0.0 <= splits.x_train.min() and splits.x_train.max() <= 1.0


def test_digits_is_an_image_dataset_and_bounds_are_the_pixel_range():
    ds = data.load(DatasetSpec("digits"))
    assert ds.image_shape == (1, 8, 8)
    assert {(c.low, c.high) for c in ds.schema.features} == {(0.0, 16.0)}


def test_breast_cancer_bounds_come_from_the_published_description():
    ds = data.load(DatasetSpec("breast_cancer"))
    first = ds.schema.features[0]
    assert first.name == "mean radius" and (first.low, first.high) == (6.981, 28.11)
    area = ds.schema.features[3]
    assert (area.low, area.high) == (143.5, 2501.0)


def test_fingerprint_ignores_row_order_column_order_and_int_vs_float():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    shuffled = frame.sample(frac=1.0, random_state=3)[["b", "a"]]
    as_float = frame.assign(a=frame["a"].astype(float))
    fp = fingerprint_frame(frame)
    assert fp == fingerprint_frame(shuffled) == fingerprint_frame(as_float)
    assert len(fp) == 64


def test_fingerprint_changes_with_one_cell_and_with_extra():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    edited = frame.copy()
    edited.loc[1, "a"] = 5
    assert fingerprint_frame(frame) != fingerprint_frame(edited)


def test_csv_fingerprint_is_independent_of_file_name_and_row_order(tmp_path):
    frame = pd.DataFrame({"x": np.arange(20) / 2, "label": [0, 1] * 10})
    frame.to_csv(tmp_path / "one.csv", index=False)
    frame.iloc[::-1].to_csv(tmp_path / "two.csv", index=False)
    decl = {"x": {"min": 0, "max": 10}, "label": {"categories": [0, 1]}}
    one = data.load(DatasetSpec("csv", path=str(tmp_path / "one.csv"), target="label", schema=decl))
    two = data.load(DatasetSpec("csv", path=str(tmp_path / "two.csv"), target="label", schema=decl))
    assert one.fingerprint == two.fingerprint
    s1, s2 = data.split(one, seed=1, test_size=0.25), data.split(two, seed=1, test_size=0.25)
    np.testing.assert_array_equal(s1.x_test, s2.x_test)  # the split ignores file row order too


def test_builtin_fingerprint_matches_the_same_table_read_from_csv(tmp_path):
    ds = data.load(DatasetSpec("wine"))
    ds.frame.sample(frac=1.0, random_state=0).to_csv(tmp_path / "wine.csv", index=False)
    from_file = data.load(DatasetSpec("csv", path=str(tmp_path / "wine.csv"), target="target", infer_schema=True))
    assert from_file.fingerprint == ds.fingerprint


def test_split_is_deterministic_by_seed_and_stratified():
    ds = data.load(DatasetSpec("breast_cancer"))
    a, b, c = (data.split(ds, seed=s, test_size=0.2) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_test, c.x_test)
    overall = np.bincount(ds.schema.encode_target(ds.frame["target"])) / ds.n_rows
    assert np.allclose(np.bincount(a.y_test) / len(a.y_test), overall, atol=0.02)


def _csv(tmp_path, **columns) -> str:
    path = tmp_path / "data.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def test_csv_with_declared_schema_scales_by_declared_bounds_and_one_hots(tmp_path):
    path = _csv(tmp_path, age=[20, 40, 60, 80], city=["a", "b", "a", "c"], label=[0, 1, 0, 1])
    decl = {"age": {"min": 0, "max": 100}, "city": {"categories": ["a", "b"]}, "label": {"categories": [0, 1]}}
    ds = data.load(DatasetSpec("csv", path=path, target="label", schema=decl))
    x = ds.schema.transform(ds.frame)
    assert x.shape == (4, 3)
    assert sorted(x[:, 0].tolist()) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert x[:, 1:].sum() == 3  # "c" is outside the declared vocabulary: all zeros


def test_csv_without_schema_needs_an_explicit_flag(tmp_path):
    path = _csv(tmp_path, x=[1.0, 2.0, 3.0, 4.0], y=[0, 1, 0, 1])
    with pytest.raises(UserError, match="dataset.infer_schema=true"):
        data.load(DatasetSpec("csv", path=path, target="y"))
    ds = data.load(DatasetSpec("csv", path=path, target="y", infer_schema=True))
    assert ds.schema.inferred and "inferred from the private data" in ds.schema.notes[0]


def test_parquet_loads(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"x": [0.1, 0.5, 0.9, 0.3], "y": [0, 1, 1, 0]}).to_parquet(path)
    ds = data.load(DatasetSpec("parquet", path=str(path), target="y", infer_schema=True))
    assert ds.n_rows == 4 and ds.features == ["x"]


@pytest.mark.parametrize(
    "spec,match",
    [
        (DatasetSpec("mnist"), "dataset='mnist' is unknown"),
        (DatasetSpec("csv", path="/nonexistent/file.csv", target="y"), "no such file"),
        (DatasetSpec("csv", path=None, target="y"), "dataset.path is missing"),
    ],
)
def test_bad_dataset_specs_are_user_errors(spec, match):
    with pytest.raises(UserError, match=match):
        data.load(spec)


def test_missing_target_and_feature_columns_are_user_errors(tmp_path):
    path = _csv(tmp_path, x=[1, 2], y=[0, 1])
    with pytest.raises(UserError, match="dataset.target='label' is not a column"):
        data.load(DatasetSpec("csv", path=path, target="label", infer_schema=True))
    with pytest.raises(UserError, match=r"dataset.features: column\(s\) \['z'\]"):
        data.load(DatasetSpec("csv", path=path, target="y", features=("z",), infer_schema=True))
    for loader in ("csv", "text"):  # a null target is named as such, for tables and for text alike
        with pytest.raises(UserError, match="dataset.target is null; name the label column"):
            data.load(DatasetSpec(loader, path=path, target=None, infer_schema=True))


def test_declared_schema_must_cover_every_feature(tmp_path):
    path = _csv(tmp_path, x=[1, 2], w=[3, 4], y=[0, 1])
    with pytest.raises(UserError, match=r"does not declare column\(s\) \['w'\]"):
        data.load(
            DatasetSpec("csv", path=path, target="y", schema={"x": {"min": 0, "max": 5}, "y": {"categories": [0, 1]}})
        )


def test_canonical_rows_of_whole_columns_are_the_per_cell_strings():
    """Fingerprints in existing ledgers depend on these strings: the fast path must not change one."""
    import numpy as np
    import pandas as pd

    from privtrain.data.fingerprint import _cell, canonical_rows

    rng = np.random.default_rng(0)
    n = 400
    floats = rng.choice([0.0, -0.0, 1.0, 16.0, 0.1, -2.5, 1e300, 2.0**53, -(2.0**53) + 1, np.nan, 1 / 3], n)
    frame = pd.DataFrame(
        {
            "f": floats,
            "i": rng.integers(-(10**12), 10**12, n),
            "u": rng.integers(0, 255, n).astype(np.uint8),
            "b": rng.random(n) < 0.5,
            "s": rng.choice(["a", "é", "x,y", '"q"'], n),
            "mixed": pd.Series(rng.choice([1, 2.5, "t", None], n), dtype=object),
            "f32": rng.random(n).astype(np.float32),
        }
    )
    slow = ["[" + ",".join(_cell(frame[c].iloc[r]) for c in sorted(frame.columns)) + "]" for r in range(n)]
    assert canonical_rows(frame) == slow


def test_copies_of_a_row_spread_over_both_sides_and_neighbours_stay_neighbours():
    """The k-th copy of a row is keyed on (row, k): a table of many duplicates splits like any other,
    the split does not depend on row order, and removing one copy changes the held-out set by one row."""
    from privtrain.data.assign import held_out

    frame = pd.DataFrame({"a": [1, 2, 3] * 400, "b": ["x", "y", "z"] * 400})  # 3 distinct rows, 400 copies each
    mask = held_out(frame, seed=0, test_size=0.2)
    for row in range(3):
        copies = mask[frame["a"].to_numpy() == row + 1]
        assert 0.12 < copies.mean() < 0.28  # copies spread (before: all copies on one side, 0 or 1)
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert held_out(shuffled, seed=0, test_size=0.2).sum() == mask.sum()  # order-independent multiset
    fewer = frame.drop(index=frame.index[-1])  # one copy fewer: every other row keeps its side
    np.testing.assert_array_equal(held_out(fewer, seed=0, test_size=0.2), mask[:-1])
    unique = pd.DataFrame({"a": range(50)})
    assert (
        held_out(unique, seed=0, test_size=0.5).tolist()
        == held_out(unique.iloc[::-1], seed=0, test_size=0.5)[::-1].tolist()
    )
