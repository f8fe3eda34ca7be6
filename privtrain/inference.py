"""Using a trained model: ``privtrain.load(RUN_DIR).predict(rows)`` and ``privtrain predict RUN_DIR data.csv``.

A run directory holds everything needed: the weights (a dp_sgd run's ``checkpoint.pt``, or a federated run's
final global model, ``final_model.pt``), and in ``run.json`` the model spec and the public preprocessing
(the schema: a public fact, saved with the run), so predicting needs
none of the original overrides or data. The checkpoint is loaded only after its hash matches what the
run's ledger entry recorded, and only as weights (no code runs while loading).

    >>> model = privtrain.load("outputs/dp_sgd/2026-01-01_00-00-00-abc123")   # doctest: +SKIP
    >>> model.predict(pd.read_csv("new_patients.csv"))                         # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from privtrain.errors import UserError, user_paths

if TYPE_CHECKING:
    from torch import nn

    from privtrain.artifacts.record import RunRecord
    from privtrain.data.schema import Schema

PREDICTS = ("dp_sgd", "federated")  # the recipes whose runs hold a model


@dataclass
class Predictor:
    """A trained model with its preprocessing."""

    model: nn.Module  # in eval mode
    schema: Schema | None  # tables; None for arrays (pass samples preprocessed as the run's were)
    classes: tuple
    run_id: str

    def predict_proba(self, rows) -> np.ndarray:
        """Class probabilities: ``rows`` is a DataFrame with the training features (tables), or an array of
        samples preprocessed as the run's were (images, your own dataset)."""
        import torch

        if self.schema is not None:
            missing = [c.name for c in self.schema.features if c.name not in rows.columns]
            if missing:
                raise UserError(f"predict: the rows lack column(s) {missing[:5]} the model was trained on.")
            clipped = self.clipped_note(rows)
            if clipped:
                import warnings

                warnings.warn(clipped, UserWarning, stacklevel=2)
            x = self.schema.transform(rows)
        else:
            x = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        with torch.no_grad():
            return torch.softmax(self.model(torch.from_numpy(x)), dim=1).numpy()

    def clipped_note(self, rows) -> str | None:
        """One line on the values of ``rows`` outside the declared bounds (clipped to them, as in training), with
        counts: these rows are the caller's own. None when there are none (or the run is not a table)."""
        counts = self.schema.clipped(rows) if self.schema is not None else {}
        if not counts:
            return None
        where = ", ".join(f"{name} ({n})" for name, n in counts.items())
        return (
            f"predict: {sum(counts.values())} value(s) outside the declared bounds were clipped to the bounds, as "
            f"in training: {where}"
        )

    def predict(self, rows) -> np.ndarray:
        """The predicted class label of each row."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(rows).argmax(1)]


def load(run_dir: str | Path, *, ledger_path: str | None = None, key_file: str | None = None) -> Predictor:
    """The model of a finished dp_sgd or federated run, ready to predict.

    Args:
        key_file: the key file that opens an encrypted model file (default: the environment's key,
            docs/governance/encryption.md).

    Raises:
        UserError: not a run directory, a run without a model (synthetic), a model this privtrain cannot rebuild,
            a model file that does not match its ledger entry, or an encrypted one the configured key cannot open.
    """
    from privtrain import models
    from privtrain.artifacts import checkpoint
    from privtrain.artifacts.record import RunRecord
    from privtrain.artifacts.run_dir import sha256_file
    from privtrain.artifacts.verify import recorded_hashes
    from privtrain.crypto import keys
    from privtrain.data.schema import Schema

    run_dir = Path(run_dir)
    record = RunRecord.read(run_dir)
    if record.schema is not None and record.schema.get("kind") == "text":  # docs/pretrained.md: not wired yet
        raise UserError(
            f"{run_dir}: predict and load do not read dataset=text runs yet; its checkpoint.pt holds the "
            "fine-tuned model's state dict (docs/pretrained.md)."
        )
    name, spec, model_spec = _model_file(run_dir, record)
    _, hashes, path = recorded_hashes(run_dir, ledger_path)
    if hashes.get(name) != sha256_file(run_dir / name):
        raise UserError(f"{run_dir}/{name} does not match the hash in the ledger {path}: it was edited or replaced.")
    schema = Schema.from_dict(spec) if spec.get("kind") == "table" else None
    classes = tuple(spec["classes"])
    shape = spec.get("image_shape")
    n_inputs = schema.n_inputs if schema is not None else int(np.prod(spec["sample_shape"]))
    model = models.build(
        models.ModelSpec.from_dict(model_spec),
        n_inputs=n_inputs,
        n_classes=len(classes),
        image_shape=tuple(shape) if shape else None,
    )
    try:  # weights and plain values only: a crafted pickle cannot run code here
        saved = checkpoint.load(run_dir / name, keyring=keys.resolve(key_file))  # opened with the key when sealed
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the hash matched, so this is an old or foreign file format
        why = type(exc).__name__
        raise UserError(f"{run_dir}/{name} does not load safely ({why}); load an unmodified run.") from None
    # dp_sgd's checkpoint holds the training state beside the weights; federated's final model is the weights
    model.load_state_dict(saved["model"] if "checkpoint" in record.outputs else saved)
    model.eval()
    return Predictor(model, schema, classes, record.run_id)


def _model_file(run_dir: Path, record: RunRecord) -> tuple[str, dict, dict]:
    """The run's model file (relative to its folder), its preprocessing and its model spec.

    Raises:
        UserError: a run without a model, or one written before federated runs recorded their preprocessing.
    """
    name = record.outputs.get("checkpoint") or record.outputs.get("model")
    if record.recipe not in PREDICTS or not name:
        raise UserError(
            f"{run_dir}: privtrain.load reads the model of a dp_sgd or federated run (this is a "
            f"{record.recipe} run, which has no model)."
        )
    if record.schema is None or record.model is None:
        raise UserError(
            f"{run_dir}: this {record.recipe} run was written before run.json recorded its "
            "preprocessing; re-run it with this privtrain to predict with it."
        )
    return str(name), record.schema, record.model


def _cmd(args: argparse.Namespace) -> int:
    import pandas as pd

    from privtrain.data.files import read_table

    output = Path(args.output or Path(args.data).with_suffix(".predictions.csv"))
    if not output.parent.is_dir():  # checked first: a model loaded and rows read for nothing help no one
        raise UserError(
            f"predict --output {output}: the folder {str(output.parent)!r} does not exist; create it or "
            "write elsewhere."
        )
    from privtrain.crypto import files, keys

    keyring = keys.resolve(args.key_file)  # a bad key is refused before the model loads or rows are read
    predictor = load(args.run_dir, ledger_path=args.ledger, key_file=args.key_file)
    rows = read_table(args.data, "parquet" if str(args.data).endswith(".parquet") else "csv")
    import warnings

    with warnings.catch_warnings():  # said once, as a line of its own, below
        warnings.simplefilter("ignore", UserWarning)
        proba = predictor.predict_proba(rows)
    note = predictor.clipped_note(rows)  # after predict_proba, which checked the columns
    if note:
        print(f"privtrain: note: {note}", file=sys.stderr)
    out = pd.DataFrame({"prediction": np.asarray(predictor.classes, dtype=object)[proba.argmax(1)]})
    for i, c in enumerate(predictor.classes):
        out[f"p_{c}"] = proba[:, i].round(6)
    with user_paths(f"predict --output {output}"):  # sealed under the key when one is configured; 0600
        files.write_file(
            output, out.to_csv(index=False).encode(), keyring, f"predictions of run {predictor.run_id}/{output.name}"
        )
    sealed_note = f" (encrypted under key id {keyring.current})" if keyring is not None else ""
    print(f"wrote {len(out)} predictions of run {predictor.run_id} to {output}{sealed_note}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict with a trained dp_sgd or federated run's model",
        description="Predict the class of every row of a CSV or Parquet file with the model of "
        "a finished dp_sgd or federated run (its preprocessing comes from the run).",
    )
    p.add_argument("run_dir", help="output directory of a finished dp_sgd or federated run")
    p.add_argument("data", help="CSV or Parquet file with the training features")
    p.add_argument("--output", default=None, help="CSV to write (default: DATA.predictions.csv)")
    p.add_argument("--ledger", default=None, metavar="PATH", help="the run's ledger (default: the one it used)")
    p.add_argument(
        "--key-file",
        default=None,
        metavar="PATH",
        help="key file that opens an encrypted run and encrypts the predictions (default: "
        "PRIVTRAIN_ARTIFACT_KEY_FILE or PRIVTRAIN_ARTIFACT_KEY)",
    )
    p.set_defaults(func=_cmd)
