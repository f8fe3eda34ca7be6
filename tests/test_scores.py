"""Scores that expose a useless model: a majority-class answer must not look as good as a real model."""

from __future__ import annotations

import numpy as np
import pytest

from privtrain import scores


def _onehot(pred: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(pred), k), 0.1)
    out[np.arange(len(pred)), pred] = 0.9
    return out


def test_a_majority_answer_is_warned_about_and_its_balanced_accuracy_is_chance():
    y = np.array([0] * 84 + [1] * 16)
    s = scores.classification(y, _onehot(np.zeros(100, int), 2), 2)
    assert s["accuracy"] == pytest.approx(0.84) and s["majority_baseline"] == pytest.approx(0.84)
    assert s["balanced_accuracy"] == pytest.approx(0.5)
    assert s["per_class_accuracy"] == {"0": 1.0, "1": 0.0}
    assert s["predicted_classes"] == 1 and "one class" in s["warning"]
    assert s["macro_f1"] == pytest.approx((2 * 0.84 / 1.84) / 2)  # F1 of class 0; class 1 scores 0


def test_a_real_model_has_no_warning_and_closed_form_scores():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 2])
    s = scores.classification(y, _onehot(pred, 3), 3)
    assert s["accuracy"] == pytest.approx(5 / 6)
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert "auc" not in s and "warning" not in s


def test_binary_auc_uses_the_positive_probability():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    assert scores.classification(y, proba, 2)["auc"] == pytest.approx(0.75)
