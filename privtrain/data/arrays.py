"""Datasets of arrays (image folders, a user's ``torch.utils.data.Dataset``) in privtrain's table shape.

Every dataset is a table to the rest of privtrain: the ledger hashes its rows to recognise a source,
the split assigns rows by a keyed hash of each row, and recipes turn rows into arrays through the
schema. For arrays, a row is (``sample``: the SHA-256 of the sample's bytes, ``target``: its label),
and :class:`ArraySchema` turns rows back into the samples. The same image in two folders is the same
row, so a subset or copy of an image folder is recognised as the same people.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from privtrain.errors import UserError

SAMPLE = "sample"


@dataclass(frozen=True, eq=False)
class ArraySchema:
    """Samples by content hash, the declared classes, and how they were preprocessed (public constants)."""

    samples: np.ndarray = field(repr=False)  # (n, *sample_shape) float32, one per distinct sample hash
    index: dict = field(repr=False)  # sample hash -> row of ``samples``
    classes: tuple
    source: str  # "declared": preprocessing from declared public constants
    notes: tuple[str, ...] = ()
    features: tuple = ()  # not a table: no per-column bounds
    kind: str = "arrays"

    @property
    def inferred(self) -> bool:
        return False

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.sample_shape))

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        rows = [self.index[h] for h in frame[SAMPLE]]
        return self.samples[rows].reshape(len(rows), -1).astype(np.float32)

    def encode_target(self, values: pd.Series) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        if any(v not in index for v in values):  # no count: it would be a fact about private samples
            raise UserError(
                f"dataset: some samples have a label outside the declared classes "
                f"{list(self.classes)[:20]}; declare every class."
            )
        return values.map(index).to_numpy(dtype=np.int64)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "classes": list(self.classes),
            "sample_shape": list(self.sample_shape),
            "source": self.source,
            "notes": list(self.notes),
        }


def table(
    x: np.ndarray, labels, classes: tuple, *, notes: tuple[str, ...] = (), kind: str = "arrays"
) -> tuple[pd.DataFrame, ArraySchema]:
    """The (sample hash, target) table of samples ``x`` with ``labels``, and the schema that maps it back."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    hashes = [hashlib.sha256(sample.tobytes()).hexdigest() for sample in x]
    index: dict[str, int] = {}
    keep: list[int] = []
    for i, h in enumerate(hashes):
        if h not in index:
            index[h] = len(keep)
            keep.append(i)
    frame = pd.DataFrame({SAMPLE: hashes, "target": list(labels)})
    return frame, ArraySchema(x[keep], index, tuple(classes), "declared", notes, kind=kind)


POOLED = 8  # image samples are pooled to at most POOLED x POOLED per channel for the ledger
MAX_FEATURES = 256  # flat samples longer than this are pooled to this many values


def identity_frame(frame: pd.DataFrame, schema: ArraySchema) -> pd.DataFrame:
    """The samples' values as a table (one column per pooled pixel, and the label): what the ledger
    compares to recognise the same samples under another preprocessing (a declared mean/std, /16, another
    dtype). Block means commute with the per-channel affine maps preprocessing applies."""
    x = schema.samples[[schema.index[h] for h in frame[SAMPLE]]]
    if x.ndim == 4:  # (n, channels, height, width)
        rows = np.array_split(np.arange(x.shape[2]), min(POOLED, x.shape[2]))
        cols = np.array_split(np.arange(x.shape[3]), min(POOLED, x.shape[3]))
        x = np.stack(
            [np.stack([x[:, :, r][:, :, :, c].mean(axis=(2, 3)) for c in cols], axis=-1) for r in rows], axis=-2
        )
    x = x.reshape(len(x), -1)
    if x.shape[1] > MAX_FEATURES:
        x = np.stack([x[:, part].mean(axis=1) for part in np.array_split(np.arange(x.shape[1]), MAX_FEATURES)], 1)
    out = pd.DataFrame(x.astype(np.float64), columns=[f"p{i}" for i in range(x.shape[1])])
    out["target"] = frame["target"].to_numpy()
    return out
