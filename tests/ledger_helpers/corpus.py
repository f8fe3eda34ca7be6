"""The derivation corpus: what careless and deliberate users make of a registered table.

Each derivation is (name, kind, base, make): ``kind`` is ``careless`` (routine preprocessing: must be
linked to its source), ``deliberate`` (an evader's transformation: may evade, and docs/ledger.md says
which do) or ``control`` (other people: must not be linked). ``base`` is the registered table the
derivation is made from (``patients``: 3,000 generated patients; ``digits``: scikit-learn's 1,797 images;
``survey``: 3,000 respondents of a low-distinctness questionnaire). ``make(base, tmp)`` returns the
derived table as the ledger sees it (for images and a torch Dataset: through privtrain's own loaders).

Used by tests/test_identity_corpus.py and benchmarks/identity_corpus.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ledger_helpers.patients import NUMERIC, patients, standardised


def survey(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A questionnaire: 12 five-level items, an age band and a region (rows far from distinct), plus the
    respondent's id, household income to the euro, and minutes taken: the columns that identify people."""
    r = np.random.default_rng(seed)
    mood = r.normal(size=n)
    items = {f"q{i + 1}": np.clip(np.round(3 + mood * 0.8 + r.normal(0, 0.9, n)), 1, 5).astype(int) for i in range(12)}
    return pd.DataFrame(
        {
            "respondent": r.permutation(np.arange(10_000, 10_000 + 5 * n))[:n],
            **items,
            "age_band": r.choice(["18-29", "30-44", "45-64", "65+"], n),
            "region": r.choice(["north", "south", "east", "west"], n),
            "income": np.round(r.lognormal(10.4, 0.5, n)).astype(int),
            "minutes": np.round(r.gamma(4, 3, n), 1),
        }
    )


def digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return load_digits(as_frame=True).frame


def _recode(frame, column, mapping):
    return frame.assign(**{column: frame[column].map(mapping)})


def _label_encode(frame, columns):
    out = frame.copy()
    for c in columns:
        out[c] = out[c].astype("category").cat.codes
    return out


def _noise(frame, columns, share, seed=3):
    r = np.random.default_rng(seed)
    out = frame.copy()
    for c in columns:
        out[c] = out[c] + r.normal(0, share * out[c].std(), len(out))
    return out


def _parquet_float32(frame, tmp: Path):
    path = tmp / "float32.parquet"
    frame.astype({c: "float32" for c in frame.columns if frame[c].dtype.kind == "f"}).to_parquet(path)
    return pd.read_parquet(path)


def _csv(frame, tmp: Path):
    frame.to_csv(tmp / "copy.csv", index=False)
    return pd.read_csv(tmp / "copy.csv")


def _combined(frame, tmp):
    part = standardised(frame.sample(frac=0.5, random_state=4)).drop(columns=["glucose", "visits"])
    part = part.assign(sex=(part.sex == "M").astype(int)).rename(columns=str.title)
    return part[list(part.columns[::-1])]


def _embedded(frame, tmp):
    other = patients(3000, seed=11, older=5)
    return pd.concat([frame, other], ignore_index=True).sample(frac=1.0, random_state=5)


class DigitsImages:
    """A user's ``torch.utils.data.Dataset``: digits' images as (1, 8, 8) tensors scaled to [0, 1]."""

    def __init__(self, half: bool = False):
        frame = digits()
        if half:
            frame = frame.iloc[::2]
        self.x = frame.drop(columns="target").to_numpy(np.float32).reshape(-1, 1, 8, 8) / 16.0
        self.y = frame["target"].to_numpy()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        import torch

        return torch.from_numpy(self.x[i]), int(self.y[i])


def _torch_dataset(frame, tmp, half=False):
    from privtrain import data

    spec = data.DatasetSpec(
        loader="custom",
        source="scans",
        factory="ledger_helpers.corpus.DigitsImages",
        kwargs={"half": half},
        classes=tuple(range(10)),
    )
    return data.load(spec).identity_table


def _image_folder(frame, tmp: Path, half=False):
    from PIL import Image

    from privtrain import data

    root = tmp / ("images_half" if half else "images")
    for i, (pixels, label) in enumerate(zip(frame.drop(columns="target").to_numpy(), frame["target"])):
        if half and i % 2:
            continue
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        img = np.round(pixels.reshape(8, 8) * 255 / 16).astype(np.uint8)
        Image.fromarray(img, mode="L").save(folder / f"{i}.png")
    spec = data.DatasetSpec(
        loader="image_folder",
        path=str(root),
        target="label",
        image={"channels": 1, "size": [8, 8], "mean": [0.5], "std": [0.5]},
    )
    return data.load(spec).identity_table


def _survey_subset_recoded(frame, tmp):
    part = frame.sample(frac=0.5, random_state=1)
    items = [c for c in part.columns if c.startswith("q")]
    return part.assign(**{c: part[c] - 1 for c in items}).rename(columns={"respondent": "RespondentID"})


def _shuffled_columns(frame, tmp):
    r = np.random.default_rng(9)
    return pd.DataFrame({c: r.permutation(frame[c].to_numpy()) for c in frame.columns})


P = "patients"
D = "digits"
S = "survey"
DERIVATIONS = [
    # --- careless: routine preprocessing, must be linked ----------------------------------------------
    ("reordered rows and columns", "careless", P, lambda f, t: f.sample(frac=1.0, random_state=1)[f.columns[::-1]]),
    ("CSV round trip", "careless", P, lambda f, t: _csv(f, t)),
    ("float32 Parquet", "careless", P, lambda f, t: _parquet_float32(f, t)),
    ("standard-scaled numbers", "careless", P, lambda f, t: standardised(f)),
    (
        "min-max scaled numbers",
        "careless",
        P,
        lambda f, t: f.assign(**{c: (f[c] - f[c].min()) / (f[c].max() - f[c].min()) for c in NUMERIC}),
    ),
    ("capitalised column names", "careless", P, lambda f, t: f.rename(columns=str.upper)),
    (
        "renamed (col_0..) and reordered",
        "careless",
        P,
        lambda f, t: f[list(np.random.default_rng(2).permutation(f.columns))].set_axis(
            [f"col_{i}" for i in range(f.shape[1])], axis=1
        ),
    ),
    ("sex F/M -> 0/1", "careless", P, lambda f, t: _recode(f, "sex", {"F": 0, "M": 1})),
    ("sex F/M -> 1/0", "careless", P, lambda f, t: _recode(f, "sex", {"F": 1, "M": 0})),
    (
        "categories label-encoded",
        "careless",
        P,
        lambda f, t: _label_encode(f, ["sex", "smoker", "region", "diagnosis"]),
    ),
    (
        "region recoded by order of appearance",
        "careless",
        P,
        lambda f, t: f.assign(region=pd.factorize(f["region"])[0] + 1),
    ),
    ("age in months", "careless", P, lambda f, t: f.assign(age=f.age * 12)),
    (
        "imperial units",
        "careless",
        P,
        lambda f, t: f.assign(height_cm=f.height_cm / 2.54, weight_kg=f.weight_kg * 2.20462),
    ),
    (
        "float32, rounded to the column's resolution",
        "careless",
        P,
        lambda f, t: (
            f.astype({c: "float32" for c in NUMERIC})
            .astype({c: "float64" for c in NUMERIC})
            .round({"height_cm": 1, "weight_kg": 1, "bmi": 1, "glucose": 1})
        ),
    ),
    ("random half of the rows", "careless", P, lambda f, t: f.sample(frac=0.5, random_state=2)),
    ("random fifth of the rows", "careless", P, lambda f, t: f.sample(frac=0.2, random_state=3)),
    ("patients aged 40 and over", "careless", P, lambda f, t: f[f.age >= 40]),
    ("four columns dropped", "careless", P, lambda f, t: f.drop(columns=["bmi", "glucose", "region", "visits"])),
    (
        "six columns kept",
        "careless",
        P,
        lambda f, t: f[["age", "sex", "height_cm", "weight_kg", "systolic_bp", "cholesterol"]],
    ),
    ("features only (label dropped)", "careless", P, lambda f, t: f.drop(columns=["readmitted"])),
    ("embedded in another clinic's rows (half)", "careless", P, _embedded),
    ("half the rows, standardised, renamed, recoded, reordered, two columns dropped", "careless", P, _combined),
    ("pd.DataFrame(load_digits().data)", "careless", D, lambda f, t: pd.DataFrame(f.drop(columns="target").to_numpy())),
    ("digits pixels / 16", "careless", D, lambda f, t: f.assign(**{c: f[c] / 16 for c in f.columns[:-1]})),
    (
        "digits standardised, float32",
        "careless",
        D,
        lambda f, t: ((f - f.mean()) / f.std().replace(0, 1)).astype("float32"),
    ),
    ("digits, a random 30%", "careless", D, lambda f, t: f.sample(frac=0.3, random_state=4)),
    ("digits as a torch Dataset (x / 16)", "careless", D, lambda f, t: _torch_dataset(f, t)),
    ("digits as a torch Dataset, every other image", "careless", D, lambda f, t: _torch_dataset(f, t, half=True)),
    ("digits as an image folder (PNG, normalised)", "careless", D, lambda f, t: _image_folder(f, t)),
    ("digits as an image folder, every other image", "careless", D, lambda f, t: _image_folder(f, t, half=True)),
    ("survey: half, items recoded 0-4, id renamed (declared id column)", "careless", S, _survey_subset_recoded),
    (
        "survey: half, without its id column",
        "careless",
        S,
        lambda f, t: f.sample(frac=0.5, random_state=2).drop(columns=["respondent"]),
    ),
    # --- deliberate: an evader's transformation (may evade) ------------------------------------------------
    ("noise of 5% of the std on every number", "deliberate", P, lambda f, t: _noise(f, NUMERIC, 0.05)),
    (
        "noise of 5% of the std, rounded back to each column's resolution",
        "deliberate",
        P,
        lambda f, t: _noise(f, NUMERIC, 0.05).round(
            {
                "age": 0,
                "height_cm": 1,
                "weight_kg": 1,
                "bmi": 1,
                "systolic_bp": 0,
                "diastolic_bp": 0,
                "cholesterol": 0,
                "glucose": 1,
                "visits": 0,
            }
        ),
    ),
    (
        "generalised: 10-year age bands, BMI to integers, measurements dropped",
        "deliberate",
        P,
        lambda f, t: f.assign(age=f.age // 10 * 10, bmi=f.bmi.round()).drop(
            columns=["height_cm", "weight_kg", "glucose", "cholesterol"]
        ),
    ),
    (
        "digits with noise of 0.5 on every pixel",
        "deliberate",
        D,
        lambda f, t: f.assign(
            **{c: f[c] + np.random.default_rng(5).uniform(-0.5, 0.5, len(f)) for c in f.columns[:-1]}
        ),
    ),
    # --- controls: other people, must not be linked -----------------------------------------------------------
    ("another clinic (same generator)", "control", P, lambda f, t: patients(3000, seed=21)),
    ("another, older clinic", "control", P, lambda f, t: patients(2000, seed=22, older=8)),
    ("every column shuffled on its own", "control", P, _shuffled_columns),
    (
        "random pixels in digits' ranges",
        "control",
        D,
        lambda f, t: pd.DataFrame(
            {c: np.random.default_rng(6).integers(f[c].min(), f[c].max() + 1, len(f)) for c in f.columns}
        ),
    ),
    ("another survey", "control", S, lambda f, t: survey(3000, seed=7)),
]

BASES = {P: lambda: patients(3000, seed=0), D: digits, S: survey}
ID_COLUMNS = {S: "respondent"}  # the declared id column of a base (and of its derivations, by content)
