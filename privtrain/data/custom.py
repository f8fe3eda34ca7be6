"""``dataset=custom``: a user's ``torch.utils.data.Dataset`` from ``dataset._target_`` (Hydra's convention).

``dataset._target_=pkg.module.make`` names a callable (a class or a function) that returns a map-style
dataset of ``(x, y)`` pairs; other keys of the ``dataset`` node are passed as keyword arguments. The
source is declared (``dataset.source``: whose people these are), and so are its size
(``dataset.size``, checked against ``len()``) and its classes (``dataset.classes``: public, they set the
model's outputs). The samples are read once, before any charge, to hash them (as a table's rows are).
"""

from __future__ import annotations

import importlib

import numpy as np

from privtrain.errors import UserError


def import_object(path: str, field: str):
    """``pkg.module.Name`` -> the object; one clear line when it cannot be found."""
    module, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(
            f"{field}={path!r} cannot be imported ({type(exc).__name__}: {exc}); give pkg.module.Name of "
            "an importable object (is its package installed or on PYTHONPATH?)."
        ) from None


def load_custom(spec):
    """(table, schema, sample shape) of a user's Dataset."""
    from privtrain.data.arrays import table

    if not spec.factory:
        raise UserError("dataset._target_ is required for dataset=custom; e.g. dataset._target_=pkg.module.MyDataset.")
    if spec.source is None and spec.derived_from is None:
        raise UserError(
            "dataset.source is required for dataset=custom: name whose people these are, e.g. "
            "dataset.source=clinic_scans (or dataset.derived_from=NAME: a known source's samples)."
        )
    if not spec.classes or len(spec.classes) < 2:
        raise UserError("dataset.classes is required for dataset=custom: list the (public) class labels, at least 2.")
    factory = import_object(spec.factory, "dataset._target_")
    try:
        dataset = factory(**dict(spec.kwargs or {}))
        size = len(dataset)
    except TypeError as exc:
        raise UserError(f"dataset._target_={spec.factory}: {exc}; check its keyword arguments.") from None
    if spec.size is not None and size != spec.size:
        raise UserError(
            f"dataset.size={spec.size} is declared but {spec.factory} holds {size} samples; declare its size."
        )
    xs, ys = [], []
    for i in range(size):
        x, y = dataset[i]
        xs.append(np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32))
        ys.append(y.item() if hasattr(y, "item") else y)
    shapes = {x.shape for x in xs}
    if len(shapes) != 1:
        raise UserError(
            f"dataset._target_={spec.factory}: samples have different shapes {sorted(shapes)[:3]}; "
            "return fixed-size tensors."
        )
    note = f"samples from the user's dataset {spec.factory}: its preprocessing is the user's to keep public"
    frame, schema = table(np.stack(xs), ys, tuple(spec.classes), notes=(note,), kind="custom")
    shape = tuple(xs[0].shape)
    return frame, schema, shape if len(shape) == 3 else None
