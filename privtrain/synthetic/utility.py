"""Machine-learning utility: TSTR (train on synthetic, test on real) beside TRTR (train on real).

Both use the same classifier and preprocessing, fitted on their own training rows, and are
scored on the same real held-out split, which the synthesizer never saw. That split is the
evaluator's data: the scores are reported, not covered by any guarantee.
"""

from __future__ import annotations

import pandas as pd

from privtrain.errors import UserError

CLASSIFIERS = ("logreg", "random_forest")
_MAX_CATEGORIES = 50


def usable_features(frame: pd.DataFrame, target: str, exclude) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns: no target, no PII, no near-unique text."""
    numeric, categorical = [], []
    for column in frame.columns:
        if column == target or column in exclude:
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numeric.append(column)
        elif values.nunique(dropna=True) <= _MAX_CATEGORIES:
            categorical.append(column)
    return numeric, categorical


def _pipeline(name: str, numeric: list[str], categorical: list[str], seed: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if name not in CLASSIFIERS:
        raise UserError(f"synth.utility.classifier={name!r} is unknown; choose one of {', '.join(CLASSIFIERS)}.")
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                categorical,
            ),
        ]
    )
    model = (
        LogisticRegression(max_iter=2000)
        if name == "logreg"
        else RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
    )
    return make_pipeline(pre, model)


def _score(pipe, train: pd.DataFrame, test: pd.DataFrame, target: str, cols: list[str]) -> dict:
    from sklearn.dummy import DummyClassifier
    from sklearn.metrics import accuracy_score, f1_score

    y_train, y_test = train[target].astype(str), test[target].astype(str)
    if y_train.nunique() < 2:  # a synthesizer can emit one class only: the best it supports is a constant
        pipe = DummyClassifier(strategy="most_frequent")
    pipe.fit(train[cols], y_train)
    pred = pipe.predict(test[cols])
    return {
        "accuracy": float(accuracy_score(y_test, pred)),
        "f1_macro": float(f1_score(y_test, pred, average="macro", zero_division=0)),
    }


def tstr_trtr(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    real_test: pd.DataFrame,
    *,
    target: str,
    exclude=(),
    classifier: str = "random_forest",
    seed: int = 0,
) -> dict:
    """TSTR and TRTR scores with one classifier on the real held-out split.

    Raises:
        UserError: the target is missing from a table.
    """
    for name, table in (("the real data", real_train), ("the synthetic rows", synthetic)):
        if target not in table.columns:
            raise UserError(
                f"dataset.target={target!r} is not a column of {name}; utility (TSTR) needs the label: "
                "set dataset.target=COLUMN or synth.utility.enabled=false."
            )
    numeric, categorical = usable_features(real_train, target, set(exclude))
    numeric = [c for c in numeric if c in synthetic.columns]
    categorical = [c for c in categorical if c in synthetic.columns]
    cols = numeric + categorical
    if not cols:
        return {"classifier": classifier, "features": [], "note": "no usable feature columns"}
    trtr = _score(_pipeline(classifier, numeric, categorical, seed), real_train, real_test, target, cols)
    tstr = _score(_pipeline(classifier, numeric, categorical, seed), synthetic, real_test, target, cols)
    return {
        "classifier": classifier,
        "features": cols,
        "n_test": len(real_test),
        "trtr_accuracy": trtr["accuracy"],
        "tstr_accuracy": tstr["accuracy"],
        "trtr_f1_macro": trtr["f1_macro"],
        "tstr_f1_macro": tstr["f1_macro"],
    }
