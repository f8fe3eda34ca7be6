"""Membership-inference attacks on one model, and the metrics every attack reports.

Every attack gives each example a score, higher meaning "more likely a training
member". The cheap attacks need only the model:

- ``loss``: the negative cross-entropy loss (Yeom et al. 2018). Training
  members tend to have lower loss.
- ``confidence``: the largest softmax probability, without the label (Salem et
  al. 2019).

Both are scored on the logit scale, log(p / (1 - p)): the loss is
softplus(-φ) with φ the true class's logit-scaled confidence, so ranking by φ
is ranking by the loss. In floating point a confident model's loss rounds to
exactly 0 and its top probability to exactly 1 for most rows, and those ties
would hide the attack; the logit scale keeps every row distinct.

The LiRA attack (:mod:`privtrain.audit.lira`) uses the logit-scaled confidence
:func:`logit_confidence` of the true class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privtrain.audit.bounds import epsilon_lower_bound

FPR_POINTS = (0.01, 0.001)


@dataclass(frozen=True)
class Outputs:
    """Per-example outputs of a model on (x, y)."""

    loss: np.ndarray
    max_prob: np.ndarray
    logit_confidence: np.ndarray  # log(p_y / (1 - p_y)) of the true class y, computed stably
    logit_max_prob: np.ndarray  # log(p_max / (1 - p_max)), computed stably

    def scores(self) -> dict[str, np.ndarray]:
        """The cheap attacks' scores (higher = member), on the logit scale (same ranking, no ties)."""
        return {"loss": self.logit_confidence, "confidence": self.logit_max_prob}


def model_outputs(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 4096) -> Outputs:
    """Evaluate ``model`` on every example; no gradients."""
    import torch

    model.eval()
    logits = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits.append(model(torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))).double())
    return outputs_from_logits(torch.cat(logits).numpy(), y)


def outputs_from_logits(logits: np.ndarray, y: np.ndarray) -> Outputs:
    """Loss, max probability and logit-scaled true-class confidence from raw logits."""
    from scipy.special import logsumexp

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    log_norm = logsumexp(logits, axis=1)
    true = logits[np.arange(len(y)), y]
    loss = log_norm - true
    # log p_y - log(1 - p_y) = z_y - logsumexp(z_other): exact, no cancellation near p_y = 1.
    logit_conf = true - _logsumexp_without(logits, y)
    top = logits.argmax(axis=1)
    logit_max = logits[np.arange(len(y)), top] - _logsumexp_without(logits, top)
    max_prob = np.exp(logits.max(axis=1) - log_norm)
    return Outputs(loss, max_prob, logit_conf, logit_max)


def _logsumexp_without(logits: np.ndarray, column: np.ndarray) -> np.ndarray:
    from scipy.special import logsumexp

    others = logits.copy()
    others[np.arange(len(column)), column] = -np.inf
    return logsumexp(others, axis=1)


def roc(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the ROC curve, flagging high scores as members."""
    from sklearn.metrics import roc_curve

    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    fpr, tpr, _ = roc_curve(labels, np.r_[members, nonmembers])
    return fpr, tpr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The best TPR at an FPR no larger than ``target`` (0 if none)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def attack_metrics(
    members: np.ndarray, nonmembers: np.ndarray, *, delta: float, confidence: float, n_attacks: int
) -> dict:
    """AUC, TPR at 1% and 0.1% FPR, the attacker's advantage and the ε lower bound of one attack."""
    from sklearn.metrics import auc

    members = np.nan_to_num(np.asarray(members, dtype=float), nan=-np.inf)
    nonmembers = np.nan_to_num(np.asarray(nonmembers, dtype=float), nan=-np.inf)
    fpr, tpr = roc(members, nonmembers)
    bound = epsilon_lower_bound(members, nonmembers, delta=delta, confidence=confidence, n_attacks=n_attacks)
    out = {
        "auc": float(auc(fpr, tpr)),
        # max over thresholds of TPR - FPR: the best gain over guessing, in [0, 1]
        "advantage": float(np.max(tpr - fpr)),
        "epsilon_lower_bound": bound.epsilon,
        "bound": bound.to_dict(),
    }
    for point in FPR_POINTS:
        out[f"tpr_at_{point:g}_fpr"] = tpr_at_fpr(fpr, tpr, point)
    return out
