"""What a dp_sgd run adds for monitoring and fairness, in one call from the recipe (so the recipe's edits stay
a few lines): plan-time checks, the charged reference release, and the fairness report with its card section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from privtrain.errors import UserError
from privtrain.monitoring import fairness, reference


@dataclass(frozen=True)
class Planned:
    """Monitoring's part of a run's plan, fixed before any row is read."""

    reference: reference.ReferencePlan | None = None
    sensitive: dict[str, tuple] | None = None  # attribute -> declared categories
    comparable: str | None = None  # config hash without the privacy group (finds the baseline)


def plan(s, dataset, delta: float) -> Planned:
    """Check ``monitor.*`` and ``dataset.sensitive`` against the public schema (no row is read for training).

    Raises:
        UserError: a setting that cannot work on this table.
    """
    ref = reference.plan(s.monitor, dataset, delta) if s.monitor.reference else None
    sensitive = None
    if s.dataset.sensitive:
        if s.dataset.loader == "synthetic":  # scored on the parent's real rows, whose groups the run cannot see
            raise UserError(
                "dataset.sensitive: a model trained on synthetic rows is scored on its parent's real "
                "held-out rows, whose groups this run does not read; drop dataset.sensitive here."
            )
        sensitive = fairness.categories(s.dataset.sensitive, s.dataset.schema, dataset.frame.columns)
    return Planned(ref, sensitive, fairness.comparable_hash(s.config_yaml) if sensitive else None)


@dataclass
class Finished:
    """What the run commits and writes besides training: the events and ε charged, files and report parts."""

    events: tuple
    own: dict | None
    files: list[Path] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # merged into metrics.json
    sections: list[str] = field(default_factory=list)  # card sections

    def add_to_card(self, card: Path) -> None:
        """Put the sections before the card's Provenance section (or at the end), as the one-run audit does."""
        if not self.sections:
            return
        text, section, marker = card.read_text(), "\n".join(self.sections), "\n## Provenance"
        if marker in text:
            head, tail = text.split(marker, 1)
            card.write_text(head.rstrip("\n") + "\n\n" + section + marker + tail)
        else:
            card.write_text(text.rstrip("\n") + "\n\n" + section)


def finish(
    m: Planned, s, splits, held_out_frame, model, out: Path, run_events: tuple, own: dict | None, delta: float
) -> Finished:
    """Release the reference statistics (charged: their event joins the run's) and compute the fairness report."""
    done = Finished(tuple(run_events), own)
    if m.reference is not None:
        import math

        events, eps = m.reference.compose(tuple(run_events), own["example"] if own else math.inf)
        done.events, done.own = events, ({"example": eps} if own else None)
        Path(out).mkdir(parents=True, exist_ok=True)
        done.files.append(
            reference.release(
                m.reference,
                splits.x_train,
                splits.y_train,
                _predict(model, splits.x_train),
                Path(out),
                reproducible_from=s.seed if s.reproducible_noise else None,
                composed_epsilon=eps if own else None,
            )
        )
        done.metrics["monitoring"] = {
            "reference": reference.FILE,
            "epsilon": m.reference.settings.epsilon,
            "delta": delta,
            "run_epsilon": eps if own else None,
            "noise_sd": m.reference.noise_sd,
        }
        done.sections.append(_monitoring_section(m.reference, eps if own else None))
    if m.sensitive and held_out_frame is not None:
        predicted = _predict(model, splits.x_test)
        fair = fairness.report(m.sensitive, held_out_frame, splits.y_test, predicted)
        if m.comparable is None:  # plan() sets it whenever there are sensitive attributes
            raise ValueError("a plan with sensitive attributes has no comparable hash")
        fair["comparable"] = m.comparable
        baseline = fairness.find_baseline(Path(out), m.comparable, s.ledger.path) if s.privacy.private else None
        if baseline is not None:
            fair["cost_of_privacy"] = fairness.cost_of_privacy(fair, baseline)
        done.metrics["fairness"] = fair
        done.sections.append(fairness.card_section(fair))
    return done


def _predict(model, x: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(torch.from_numpy(x).to(device)).argmax(1).cpu().numpy()


def _monitoring_section(ref: reference.ReferencePlan, run_eps: float | None) -> str:
    charged = f"ε = {run_eps:.3g}" if run_eps is not None else "no finite ε"
    return (
        "## Monitoring\n\n"
        f"This run released DP reference statistics (`{reference.FILE}`): noisy histograms of its training rows, "
        f"one per feature over the schema's public bins, one of the labels and one of the model's predicted classes "
        f"({ref.histograms} histograms, "
        f"Gaussian noise σ = {ref.noise_sd:.3g} per bin, add/remove adjacency, L2 sensitivity √{ref.histograms}). "
        f"They alone are (ε = {ref.settings.epsilon:g}, δ = {ref.delta:.3g})-DP; the ledger charged the run for "
        f"their composition with training: {charged}. `privtrain monitor` compares new rows with them; a drift "
        "report's guarantee is theirs.\n"
    )
