"""Classification scores that show a useless model for what it is.

Accuracy alone hides a model that answers the majority class for every row: on a table where 84% of rows
are one class, that model scores 0.84. Every evaluation therefore reports, beside accuracy:

- ``majority_baseline``: the accuracy of always answering the held-out split's most frequent class;
- ``balanced_accuracy``: the mean recall over the classes present (0.5 for a one-class answer on two classes);
- ``macro_f1``: the unweighted mean F1 over the classes;
- ``auc``: the ROC AUC of the positive class's probability, for binary targets;
- ``per_class_accuracy``: each class's recall;
- ``warning``: set when the model predicts a single class for every row (or does no better than the baseline).

All are computed on the held-out split: the evaluator's data, reported but not covered by the guarantee.
"""

from __future__ import annotations

import numpy as np


def classification(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict:
    """Scores of predicted class probabilities ``proba`` (rows x classes) against labels ``y_true``.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``majority_baseline``, ``per_class_accuracy``
        (class index as text -> recall, None for a class absent from ``y_true``), ``auc`` (binary targets
        with both classes present, else absent), ``predicted_classes`` and, for a degenerate model, ``warning``.
    """
    from sklearn.metrics import f1_score, roc_auc_score

    y_true = np.asarray(y_true)
    pred = np.asarray(proba).argmax(1)
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "n_test": 0}
    present = np.unique(y_true)
    recall = {
        str(c): (float((pred[y_true == c] == c).mean()) if (y_true == c).any() else None) for c in range(n_classes)
    }
    counts = np.bincount(y_true, minlength=n_classes)
    accuracy, baseline = float((pred == y_true).mean()), float(counts.max() / len(y_true))
    out: dict[str, float | int | str | dict[str, float | None]] = {
        "accuracy": accuracy,
        "balanced_accuracy": float(np.mean([recall[str(c)] for c in present])),
        "macro_f1": float(f1_score(y_true, pred, labels=list(range(n_classes)), average="macro", zero_division=0)),
        "majority_baseline": baseline,
        "per_class_accuracy": recall,
        "predicted_classes": int(len(np.unique(pred))),
    }
    if n_classes == 2 and len(present) == 2:
        out["auc"] = float(roc_auc_score(y_true, np.asarray(proba)[:, 1]))
    if out["predicted_classes"] == 1 and len(present) > 1:
        out["warning"] = (
            f"the model predicts one class ({int(pred[0])}) for every held-out row: its accuracy "
            f"equals the majority baseline at best; look at balanced accuracy"
        )
    elif accuracy <= baseline and len(present) > 1:
        out["warning"] = (
            f"accuracy {accuracy:.3f} is no better than always answering the majority class ({baseline:.3f})"
        )
    return out
