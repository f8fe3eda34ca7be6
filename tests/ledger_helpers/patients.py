"""A realistic patients table (mixed numeric and categorical columns, measurement resolutions as clinics
record them), and the derivations of it that careless and deliberate users make.

Used by tests/test_identity_corpus.py and benchmarks/identity_corpus.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ["north", "south", "east", "west", "central"]
DIAGNOSES = ["none", "hypertension", "diabetes", "asthma", "copd", "ckd"]


def patients(n: int = 3000, seed: int = 0, *, older: float = 0.0) -> pd.DataFrame:
    """``n`` patients; ``older`` shifts the age distribution (another clinic's population)."""
    r = np.random.default_rng(seed)
    sex = r.choice(["F", "M"], n, p=[0.52, 0.48])
    male = sex == "M"
    age = np.clip(np.round(r.normal(52 + older, 17, n)), 18, 95).astype(int)
    height = np.round(np.where(male, r.normal(176, 7, n), r.normal(163, 6.5, n)), 1)
    bmi_true = np.clip(r.lognormal(np.log(26.5) + 0.002 * (age - 50), 0.17, n), 15, 55)
    weight = np.round(bmi_true * (height / 100) ** 2, 1)
    bmi = np.round(weight / (height / 100) ** 2, 1)
    sbp = np.round(105 + 0.45 * age + 0.6 * (bmi - 25) + r.normal(0, 12, n)).astype(int)
    dbp = np.round(0.45 * sbp + 12 + r.normal(0, 7, n)).astype(int)
    chol = np.round(r.normal(190 + 0.4 * (age - 50), 35, n)).astype(int)
    glucose = np.round(np.clip(r.lognormal(np.log(5.4) + 0.01 * (bmi - 25), 0.18, n), 3.0, 25.0), 1)
    smoker = r.choice(["never", "former", "current"], n, p=[0.58, 0.26, 0.16])
    region = r.choice(REGIONS, n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    visits = np.minimum(r.poisson(2.5 + 0.03 * (age - 50).clip(0), n), 20)
    risk = 0.02 * (age - 50) + 0.03 * (bmi - 27) + 0.02 * (sbp - 130) / 5 + (smoker == "current") * 0.5
    diagnosis = np.where(r.random(n) < 1 / (1 + np.exp(-(risk - 1.2))), r.choice(DIAGNOSES[1:], n), "none")
    label = (r.random(n) < 1 / (1 + np.exp(-(risk + 0.3 * visits - 1.5)))).astype(int)
    return pd.DataFrame(
        {
            "age": age,
            "sex": sex,
            "height_cm": height,
            "weight_kg": weight,
            "bmi": bmi,
            "systolic_bp": sbp,
            "diastolic_bp": dbp,
            "cholesterol": chol,
            "glucose": glucose,
            "smoker": smoker,
            "region": region,
            "visits": visits,
            "diagnosis": diagnosis,
            "readmitted": label,
        }
    )


NUMERIC = ["age", "height_cm", "weight_kg", "bmi", "systolic_bp", "diastolic_bp", "cholesterol", "glucose", "visits"]


def standardised(frame: pd.DataFrame, columns=None) -> pd.DataFrame:
    out = frame.copy()
    for c in columns or [c for c in NUMERIC if c in frame]:
        out[c] = (out[c] - out[c].mean()) / out[c].std()
    return out
