"""DP reference statistics: noisy per-column histograms of the training rows, charged like any mechanism.

Mechanism (Gaussian, add/remove-one-example adjacency). The release is a vector of h histograms: one per
feature over its public bins (:mod:`privtrain.monitoring.bins`), one of the training labels and one of the
trained model's predicted classes on the training rows, both over the declared classes. Every row falls in
exactly one bin of each histogram, so adding or removing one row changes h coordinates by 1: the L2
sensitivity of the vector is sqrt(h). (The predictions' histogram is computed after training, from the DP
model: given the model, its sensitivity is 1, and Gaussian mechanisms with fixed noise compose adaptively
exactly as one Gaussian of the summed squared sensitivities, so the one event below covers it.) Gaussian noise of standard
deviation ``sigma = z * sqrt(h)`` on every bin is the Gaussian mechanism with noise multiplier ``z``; ``z`` is
the smallest that gives ``(monitor.epsilon, delta)`` alone, from dp-accounting's analytic (PLD) calibration
(Balle & Wang 2018). The event charged is ``GaussianDpEvent(z)``; the ledger composes it with DP-SGD's
events in the run's one example-level charge (so admission, the policy's ε cap and the card see the
composition).

Predictions on training rows are a private statistic too, which is why they are in the same charged
release: drift of the model's predictions on new rows is judged against them (comparing with the label
histogram would flag an imperfect model's own bias as drift).

The bins and ``z`` are fixed from the config and the public schema before any row is read; the noise draws
from the operating system's entropy (:mod:`privtrain.privacy.randomness`), never from ``seed``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from privtrain.errors import UserError
from privtrain.monitoring.bins import schema_bins
from privtrain.monitoring.settings import MonitorSettings

if TYPE_CHECKING:
    from privtrain.data.schema import Schema

FILE = "reference_stats.json"
KIND = "privtrain.reference_stats"


@dataclass(frozen=True)
class ReferencePlan:
    """The release, fixed from public facts: bins, the noise multiplier and its event."""

    settings: MonitorSettings
    schema: Schema
    target: str
    delta: float
    noise_multiplier: float

    @property
    def histograms(self) -> int:
        return len(self.schema.features) + 2  # every feature, the labels and the model's predictions

    @property
    def sensitivity(self) -> float:
        return math.sqrt(self.histograms)

    @property
    def noise_sd(self) -> float:
        return self.noise_multiplier * self.sensitivity

    @property
    def event(self):
        import dp_accounting

        return dp_accounting.GaussianDpEvent(float(self.noise_multiplier))

    def compose(self, events, epsilon: float) -> tuple[tuple, float]:
        """``events`` (the training's) with this release's event, and the ε of their composition at ``delta``:
        the tight PLD figure, never below ``epsilon`` (the training's own accountant)."""
        from privtrain.ledger.charges import reported_epsilon

        both = (*events, self.event)
        return both, reported_epsilon(both, self.delta, epsilon) if math.isfinite(epsilon) else math.inf


def plan(settings: MonitorSettings, dataset, delta: float) -> ReferencePlan | None:
    """The reference release of a run (None when ``monitor.reference`` is off). Reads no row.

    Raises:
        UserError: a run that is not a table, or ε/bins out of range.
    """
    if not settings.reference:
        return None
    if not getattr(dataset.schema, "features", None):  # image folders and custom datasets have no columns
        raise UserError(
            "monitor.reference=true needs a table with a schema (csv, parquet or a built-in table); "
            "images have no per-column bins: drop monitor.reference."
        )
    if not (math.isfinite(settings.epsilon) and settings.epsilon > 0):
        raise UserError(f"monitor.epsilon={settings.epsilon} must be a positive number, e.g. monitor.epsilon=0.5.")
    if not 1 <= settings.bins <= 1000:
        raise UserError(f"monitor.bins={settings.bins} must be between 1 and 1000, e.g. monitor.bins=10.")
    return ReferencePlan(
        settings, dataset.schema, dataset.target, float(delta), noise_multiplier(settings.epsilon, delta)
    )


def noise_multiplier(epsilon: float, delta: float) -> float:
    """The smallest Gaussian noise multiplier (σ / L2 sensitivity) giving (ε, δ) for one release."""
    from dp_accounting.pld import accountant, common

    return float(accountant.get_smallest_gaussian_noise(common.DifferentialPrivacyParameters(epsilon, delta)))


def release(
    ref: ReferencePlan,
    x_train: np.ndarray,
    y_train: np.ndarray,
    predicted: np.ndarray,
    out: Path,
    *,
    reproducible_from: int | None = None,
    composed_epsilon: float | None = None,
) -> Path:
    """Noise the training rows' histograms and write ``reference_stats.json`` in ``out``.

    Args:
        ref: the planned release.
        x_train, y_train: the encoded training rows and their label codes (private: only noisy counts leave).
        predicted: the trained model's class codes for ``x_train`` (private too).
        out: the run directory.
        reproducible_from: ``reproducible_noise``'s seed (debugging; the run's guarantee is then void).
        composed_epsilon: the ε the ledger charges for the run (training and this release), for the file.

    Returns:
        The file written.
    """
    from privtrain.privacy.events import to_json
    from privtrain.privacy.randomness import numpy_generator

    rng = numpy_generator(reproducible_from, purpose="reference_stats")
    features, start = [], 0
    for bins in schema_bins(ref.schema, ref.settings.bins):
        block = x_train[:, start : start + bins.column.width]
        start += bins.column.width
        counts = bins.counts_encoded(block)
        features.append(
            {
                "name": bins.column.name,
                "kind": bins.kind,
                "bins": list(bins.labels),
                "counts": _noisy(counts, ref.noise_sd, rng),
            }
        )
    k = len(ref.schema.classes)
    labels = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=k).astype(np.float64)
    predictions = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=k).astype(np.float64)
    doc = {
        "kind": KIND,
        "version": 1,
        "rows": "the run's training rows",
        "mechanism": {
            "kind": "gaussian",
            "adjacency": "add/remove one example",
            "histograms": ref.histograms,
            "l2_sensitivity": ref.sensitivity,
            "noise_multiplier": ref.noise_multiplier,
            "noise_sd": ref.noise_sd,
            "bins_from": "the declared schema (never the rows)",
            "numeric_bins": ref.settings.bins,
            "event": to_json(ref.event),
            "noise": "OS entropy" if reproducible_from is None else "reproducible (guarantee void)",
        },
        "guarantee": {
            "epsilon": ref.settings.epsilon if reproducible_from is None else None,  # None: void
            "delta": ref.delta,
            "unit": "example",
            "run_epsilon": _finite(composed_epsilon),
            "note": "these statistics alone are (epsilon, delta)-DP; the ledger charges the run for their "
            "composition with training (run_epsilon)",
        },
        "features": features,
        "label": {
            "name": ref.target,
            "bins": [str(c) for c in ref.schema.classes],
            "counts": _noisy(labels, ref.noise_sd, rng),
        },
        "predictions": {
            "bins": [str(c) for c in ref.schema.classes],
            "counts": _noisy(predictions, ref.noise_sd, rng),
            "model": "the run's trained model, on its training rows",
        },
    }
    path = Path(out) / FILE
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: an infinite ε (no guarantee) is written as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def _noisy(counts: np.ndarray, sd: float, rng) -> list[float]:
    """Counts plus N(0, sd²) per bin, rounded to 0.001 (post-processing). Negative values are kept: clipping
    them is the reader's post-processing, and keeping them leaves the noise unbiased."""
    return [round(float(v), 3) for v in counts + rng.normal(0.0, sd, size=counts.shape)]


def read(run_dir: Path) -> dict:
    """The reference statistics of a run.

    Raises:
        UserError: the run released none, or the file is not privtrain's.
    """
    path = Path(run_dir) / FILE
    if not path.is_file():
        raise UserError(
            f"{run_dir}: no {FILE}; the run released no reference statistics (train it with "
            "monitor.reference=true to monitor it)."
        )
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise UserError(f"{path} is not privtrain reference statistics; restore the run's own file.")
    return doc
