"""Row overlap from keyed hashes: same people are linked, different tables are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from privtrain.ledger import overlap as ov

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def digits():
    return load_digits(as_frame=True).frame


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(as_frame=True).frame


def known_of(frame, source, seed=0):
    p = ov.profile(frame, KEY, rng=rng(seed))
    return p, ov.Known(source, p.columns, p.n_rows, p.row_hashes, [(p.columns, p.sample)])


def links(frame, known, id_column=None, seed=1):
    columns, cells = ov.cell_hashes(frame, KEY)
    p = ov.profile_cells(columns, cells, KEY, rng=rng(seed))
    return ov.find_links(p, cells, [known], id_column=id_column, key=KEY)


def one_link(frame, known, method, id_column=None):
    found = links(frame, known, id_column)
    assert len(found) == 1, found
    assert found[0].linked and found[0].method == method and found[0].source == known.source
    return found[0]


# --- same rows ---------------------------------------------------------------------------------------


def test_reordered_rows_link_fully(digits):
    _, known = known_of(digits, "digits")
    o = one_link(digits.sample(frac=1.0, random_state=3)[digits.columns[::-1]], known, "rows")
    assert o.fraction_of_new == 1.0 and o.fraction_of_known == 1.0 and o.shared_rows == len(digits)
    assert "100% of these rows belong to source `digits`" in o.reason
    as_set = ov.Known("digits", known.columns, known.n_rows, {int(h) for h in known.row_hashes})
    assert links(digits.iloc[::-1], as_set)[0].fraction_of_new == 1.0
    tiny = links(digits.iloc[:2], known)          # every row of a 2-row table
    assert tiny and tiny[0].shared_rows == 2 and tiny[0].linked


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_round_trip_links(tmp_path, cancer, digits, fmt):
    for name, frame in [("cancer", cancer), ("digits", digits)]:
        _, known = known_of(frame, name)
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
            back = pd.read_csv(path)
        else:
            frame.to_parquet(path, index=False)
            back = pd.read_parquet(path)
        o = one_link(back, known, "rows")
        assert o.fraction_of_new >= 0.99 and o.fraction_of_known >= 0.99


def test_integral_floats_hash_like_ints():
    a = pd.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"]})
    b = pd.DataFrame({"s": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]})
    assert np.array_equal(ov.profile(a, KEY).row_hashes, ov.profile(b, KEY).row_hashes)


def test_row_removed_subset_and_appended(digits):
    _, known = known_of(digits, "digits")
    o = one_link(digits.drop(index=digits.index[17]), known, "rows")
    assert o.fraction_of_new == 1.0 and o.shared_rows == len(digits) - 1
    o = one_link(digits.sample(frac=0.3, random_state=4), known, "rows")
    assert o.fraction_of_new == 1.0 and o.fraction_of_known == pytest.approx(0.3, abs=0.01)
    r = rng(5)
    extra = pd.DataFrame({c: r.integers(0, 17, 3 * len(digits)).astype(float) for c in digits.columns})
    extra["target"] = r.integers(0, 10, len(extra))
    o = one_link(pd.concat([digits, extra], ignore_index=True), known, "rows")
    assert o.fraction_of_known == pytest.approx(1.0) and o.fraction_of_new == pytest.approx(0.25)


# --- other column sets -------------------------------------------------------------------------------


def test_constant_column_removed_from_digits(digits):
    assert (digits["pixel_0_0"] == 0).all()
    _, known = known_of(digits, "digits")
    o = one_link(digits.drop(columns=["pixel_0_0"]), known, "columns")
    assert o.fraction_of_known == pytest.approx(1.0, abs=0.1) and o.fraction_of_new == pytest.approx(1.0, abs=0.1)
    half = digits.drop(columns=["pixel_0_0"]).sample(frac=0.5, random_state=6)
    o = one_link(half, known, "columns")
    assert o.fraction_of_known == pytest.approx(0.5, abs=0.1) and o.fraction_of_new == pytest.approx(1.0, abs=0.1)


def test_cancer_columns_dropped_or_added(cancer):
    _, known = known_of(cancer, "cancer")
    dropped = cancer.drop(columns=list(cancer.columns[[0, 3, 7, 12, 20]]))
    o = one_link(dropped, known, "columns")
    assert len(o.columns) == 26 and o.fraction_of_known == pytest.approx(1.0, abs=0.1)
    o = one_link(dropped.sample(frac=0.6, random_state=7), known, "columns")
    assert o.fraction_of_known == pytest.approx(0.6, abs=0.1) and o.fraction_of_new == pytest.approx(1.0, abs=0.1)
    added = cancer.assign(ratio=cancer["mean area"] / cancer["mean radius"])
    o = one_link(added, known, "columns")
    assert o.fraction_of_known == pytest.approx(1.0, abs=0.1) and o.fraction_of_new == pytest.approx(1.0, abs=0.1)


def test_declared_id_column():
    r = rng(8)
    n = 1000
    people = pd.DataFrame({"id": r.permutation(10**6)[:n], "age": r.integers(18, 90, n),
                           **{f"f{i}": r.normal(size=n) for i in range(5)}})
    _, known = known_of(people, "people")
    part = people.sample(frac=0.4, random_state=9)[["id", "age"]].assign(outcome=r.integers(0, 2, 400))
    o = one_link(part, known, "id", id_column="id")
    assert o.columns == ("id",) and "id column `id`" in o.reason
    assert o.fraction_of_known == pytest.approx(0.4, abs=0.1) and o.fraction_of_new == pytest.approx(1.0, abs=0.1)
    # an id column that the source lacks falls back to the shared columns
    assert links(part.rename(columns={"id": "pid"}), known, id_column="pid") == []


# --- no false links ----------------------------------------------------------------------------------


def test_independent_draws_same_columns_not_linked(digits):
    _, known = known_of(digits, "digits")
    r = rng(10)
    fake = pd.DataFrame({c: r.integers(digits[c].min(), digits[c].max() + 1, len(digits)).astype(digits[c].dtype)
                         for c in digits.columns})
    assert links(fake, known) == []
    assert links(fake.drop(columns=["pixel_0_0"]), known) == []
    first, second = digits.iloc[:900], digits.iloc[900:]
    _, known_first = known_of(first, "first")
    assert links(second, known_first) == []


def test_noise_perturbed_copy_not_linked(cancer):
    _, known = known_of(cancer, "cancer")
    r = rng(11)
    features = cancer.columns.drop("target")
    noisy = cancer.copy()
    noisy[features] += r.normal(size=(len(cancer), len(features))) * (0.05 * cancer[features].std()).to_numpy()
    assert links(noisy, known) == []
    assert links(noisy.drop(columns=list(features[:5])), known) == []
    p = ov.profile(noisy, KEY, rng=rng(12))
    o = ov.compare_rows(p, known.row_hashes, known.n_rows, source="cancer")
    assert not o.linked and o.shared_rows == 0


def test_low_cardinality_tables_not_linked():
    r = rng(13)
    cols = list("abcde")
    a = pd.DataFrame(r.integers(0, 2, (1000, 5)), columns=cols)
    b = pd.DataFrame(r.integers(0, 2, (1000, 5)), columns=cols)
    pa, known = known_of(a, "a")
    pb = ov.profile(b, KEY, rng=rng(14))
    o = ov.compare_rows(pb, pa.row_hashes, pa.n_rows, source="a")
    assert o.shared_rows == 1000       # every row coincides with some row of `a`
    assert not o.linked and "not identifying" in o.reason
    assert links(b, known) == []
    # nor on a shared low-cardinality column subset
    o = ov.compare_columns(*ov.cell_hashes(b[["a", "b"]], KEY)[::-1], pa.sample, pa.columns, pa.n_rows, key=KEY)
    assert not o.linked and "not identifying" in o.reason


def test_no_or_unidentifying_shared_columns(cancer, digits):
    pc = ov.profile(cancer.drop(columns=["target"]), KEY, rng=rng(0))
    columns, cells = ov.cell_hashes(digits, KEY)
    assert ov.compare_columns(cells, columns, pc.sample, pc.columns, pc.n_rows, key=KEY) is None
    pd_ = ov.profile(digits, KEY, rng=rng(0))
    columns, cells = ov.cell_hashes(cancer, KEY)      # shares only the 0/1 `target` column with digits
    o = ov.compare_columns(cells, columns, pd_.sample, pd_.columns, pd_.n_rows, key=KEY, source="digits")
    assert o.columns == ("target",) and not o.linked and "not identifying" in o.reason


# --- keys, digests, storage --------------------------------------------------------------------------


def test_key_matters(cancer):
    one = ov.profile(cancer, KEY, rng=rng(0))
    again = ov.profile(cancer, KEY, rng=rng(0))
    other = ov.profile(cancer, OTHER_KEY, rng=rng(0))
    assert np.array_equal(one.row_hashes, again.row_hashes) and np.array_equal(one.sample, again.sample)
    assert not np.isin(one.row_hashes, other.row_hashes).any()
    assert not np.isin(one.sample, other.sample).any()
    raw = cancer.to_numpy(dtype=float).astype("<f8").tobytes()
    stored = ov.sample_to_bytes(one.sample) + ov.hashes_to_int64(one.row_hashes).tobytes()
    words = {stored[i:i + 8] for i in range(0, len(stored), 8)}
    assert not words & {raw[i:i + 8] for i in range(0, len(raw), 8)}
    with pytest.raises(ValueError):
        ov.profile(cancer, b"short")


def test_set_digest():
    h = rng(15).integers(0, 2**64, 200, dtype=np.uint64)
    d = ov.set_digest(h)
    assert d == ov.set_digest(h[::-1]) == ov.set_digest(np.concatenate([h, h[:5]]))
    assert len(d) == 64 and ov.set_digest(h[1:]) != d
    assert ov.set_digest((), base=ov.set_digest(h[1:]), add=h[:1]) == d
    assert ov.set_digest((), base=d, remove=h[:1]) == ov.set_digest(h[1:])


def test_storage_round_trips():
    m = rng(16).integers(0, 2**64, (37, 5), dtype=np.uint64)
    m[0, 0], m[1, 1] = 0, 2**64 - 1
    back = ov.sample_from_bytes(ov.sample_to_bytes(m), 5)
    assert back.dtype == np.uint64 and np.array_equal(back, m)
    h = m[:, 0]
    as_int = ov.hashes_to_int64(h)
    assert as_int.dtype == np.int64 and all(-2**63 <= int(x) < 2**63 for x in as_int)
    assert np.array_equal(ov.int64_to_hashes([int(x) for x in as_int]), h)
