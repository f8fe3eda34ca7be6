"""Experiment tracking: MLflow or TensorBoard, chosen with ``tracking=`` (default: none).

A tracker receives the run's parameters, ε as training goes (per step, or per federated round), the
final metrics and guarantee, and the model card and config as artifacts. It receives nothing a run
does not already publish: no rows, and no training-batch loss (a non-DP statistic of the training
rows) unless ``tracking.log_train_loss=true`` declares it; it is then logged as
``train_batch_loss_not_dp`` and tagged as outside the guarantee. MLflow's
embedded default is an SQLite store in ``./mlruns`` (MLflow 3 retired the plain file store).

The run protocol (:mod:`privtrain.api`) starts the tracker once the budget is reserved and makes it
the active one; training loops report through :func:`report`, which does nothing when no tracker is
active, so recipes need not know which tracker (if any) is listening.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

from privtrain.errors import UserError

KINDS = ("none", "mlflow", "tensorboard")
TRAIN_LOSS = "train_batch_loss_not_dp"
_TRAIN_LOSS_NOTE = (
    "declared by tracking.log_train_loss=true: the training-batch loss is a non-DP statistic of the "
    "training rows; no privacy guarantee covers it"
)


@dataclass(frozen=True)
class TrackingSettings:
    kind: str = "none"
    uri: str | None = None
    experiment: str | None = None
    log_dir: str | None = None
    log_train_loss: bool = False  # declared export of a non-DP statistic of the training rows


class Tracker:
    """No tracking (``tracking=none``): every method does nothing."""

    log_train_loss = False

    def step(self, step: int, scalars: dict) -> None:
        pass

    def finish(self, result, files: list[Path]) -> None:
        pass

    def fail(self) -> None:
        pass


class MlflowTracker(Tracker):
    def __init__(self, s: TrackingSettings, recipe: str, run_name: str, params: dict):
        try:
            import mlflow
        except ImportError:
            raise UserError(
                "tracking=mlflow needs MLflow: pip install 'privtrain[track]' (or mlflow-skinny)."
            ) from None
        import logging
        import os

        # An unreachable tracking server: fail in seconds, not MLflow's minutes of backoff (yours wins if set).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its table-creation chatter on every run
        self.mlflow = mlflow
        if s.uri is None:
            Path("mlruns").mkdir(exist_ok=True)
        uri = s.uri or "sqlite:///mlruns/mlflow.db"
        try:
            mlflow.set_tracking_uri(uri)
            _experiment(mlflow, uri, s.experiment or f"privtrain-{recipe}")
            self.run = mlflow.start_run(run_name=run_name)
            if s.log_train_loss:
                mlflow.set_tag(TRAIN_LOSS, _TRAIN_LOSS_NOTE)
        except Exception as exc:  # noqa: BLE001 - a store MLflow cannot open is the user's to fix
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"tracking.uri={uri}: MLflow could not start a run there ({first}); fix tracking.uri "
                "or run with tracking=none."
            ) from None
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def step(self, step: int, scalars: dict) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in scalars.items() if _finite(v)}, step=step)

    def finish(self, result, files: list[Path]) -> None:
        final = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float)) and _finite(v)}
        for g in result.guarantees:
            final[f"epsilon_{g.unit}"] = g.epsilon if math.isfinite(g.epsilon) else 1e308
            self.mlflow.set_tag(f"guarantee_{g.unit}", g.describe())
        self.mlflow.log_metrics(final)
        for file in files:
            if file.name in ("model_card.md", "config.yaml", "run.json", "metrics.json"):
                self.mlflow.log_artifact(str(file))
        self.mlflow.end_run()

    def fail(self) -> None:
        self.mlflow.end_run(status="FAILED")


class TensorboardTracker(Tracker):
    def __init__(self, s: TrackingSettings, output_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("tracking=tensorboard needs TensorBoard: pip install 'privtrain[track]'.") from None
        self.writer = SummaryWriter(log_dir=s.log_dir or str(Path(output_dir) / "tensorboard"))
        if s.log_train_loss:
            self.writer.add_text(TRAIN_LOSS, _TRAIN_LOSS_NOTE, 0)

    def step(self, step: int, scalars: dict) -> None:
        for k, v in scalars.items():
            if _finite(v):
                self.writer.add_scalar(k, float(v), step)

    def finish(self, result, files: list[Path]) -> None:
        for k, v in result.metrics.items():
            if isinstance(v, (int, float)) and _finite(v):
                self.writer.add_scalar(f"final/{k}", float(v), 0)
        for g in result.guarantees:
            self.writer.add_text(f"guarantee/{g.unit}", g.describe(), 0)
        self.writer.close()

    def fail(self) -> None:
        self.writer.close()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if k == "hydra":
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def preflight(s: TrackingSettings) -> None:
    """Refuse, before anything is charged, a tracker whose package is missing."""
    needs = {"mlflow": ("mlflow", "MLflow"), "tensorboard": ("tensorboard", "TensorBoard")}.get(s.kind)
    if needs is not None and importlib.util.find_spec(needs[0]) is None:
        raise UserError(
            f"tracking={s.kind} needs {needs[1]}: pip install 'privtrain[track]', or run with tracking=none."
        )


def start(s: TrackingSettings, *, recipe: str, run_name: str, config_yaml: str, output_dir: Path) -> Tracker:
    """The tracker for ``tracking=``; one clear line if its package is missing."""
    if s.kind == "mlflow":
        import yaml

        tracker: Tracker = MlflowTracker(s, recipe, run_name, _flatten(yaml.safe_load(config_yaml) or {}))
    elif s.kind == "tensorboard":
        tracker = TensorboardTracker(s, output_dir)
    else:
        return Tracker()
    tracker.log_train_loss = s.log_train_loss
    return tracker


_ACTIVE: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("privtrain_tracker", default=None)


@contextlib.contextmanager
def active(tracker: Tracker):
    """Make ``tracker`` the one :func:`report` writes to; a run that raises ends it as failed."""
    token = _ACTIVE.set(tracker)
    try:
        yield tracker
    except BaseException:
        tracker.fail()
        raise
    finally:
        _ACTIVE.reset(token)


def listening() -> bool:
    """Whether a tracker (other than ``tracking=none``) is active."""
    return type(_ACTIVE.get()) not in (type(None), Tracker)


def report_train_loss(step: int, loss: float) -> None:
    """Log the training-batch loss, only where ``tracking.log_train_loss=true`` declared its export."""
    tracker = _ACTIVE.get()
    if tracker is not None and tracker.log_train_loss:
        tracker.step(step, {TRAIN_LOSS: loss})


def report(step: int, **scalars: float) -> None:
    """Log scalars at ``step`` to the active tracker, if any (e.g. ``report(40, epsilon=1.2)``)."""
    tracker = _ACTIVE.get()
    if tracker is not None:
        tracker.step(step, scalars)


def _experiment(mlflow, uri: str, name: str) -> None:
    """Select experiment ``name``. A new one on a local SQLite store keeps its artifacts beside the database
    (``<db folder>/artifacts``): MLflow's default is ``./mlruns`` under whatever the working directory is."""
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
        artifacts = (Path(uri[len("sqlite:///") :]).resolve().parent / "artifacts").as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=artifacts)
        except Exception:  # noqa: BLE001 - another process of a parallel sweep created it first
            pass
    mlflow.set_experiment(name)
