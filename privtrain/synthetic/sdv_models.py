"""SDV's single-table synthesizers, built from plain values.

These synthesizers are **not** differentially private: they fit the real rows directly, and
SDV 2.0 also records each column's observed range. Their outputs therefore carry ε = ∞, and
the recipe charges them as a ``NonPrivateDpEvent`` (refused on a dataset with a budget unless
``ledger.allow_non_private=true``).

Example:
    >>> synth = build("gaussian_copula", metadata, params={"default_distribution": "beta"})  # doctest: +SKIP
    >>> rows = fit_sample(synth, frame, "breast_cancer", num_rows=100, seed=0)                # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import warnings

import pandas as pd

from privtrain.errors import UserError

CLASSES = {
    "gaussian_copula": "GaussianCopulaSynthesizer",
    "ctgan": "CTGANSynthesizer",
    "tvae": "TVAESynthesizer",
    "copulagan": "CopulaGANSynthesizer",
}
_NEURAL = ("ctgan", "tvae", "copulagan")
_TUPLES = ("generator_dim", "discriminator_dim", "compress_dims", "decompress_dims")


def synthesizer_class(model: str):
    import sdv.single_table

    if model not in CLASSES:
        raise UserError(f"synth={model!r} is not an SDV synthesizer; choose one of {', '.join(CLASSES)}.")
    return getattr(sdv.single_table, CLASSES[model])


def hyperparameters(model: str) -> list[str]:
    """The keyword arguments SDV's synthesizer accepts (besides ``metadata``)."""
    params = inspect.signature(synthesizer_class(model).__init__).parameters
    return [p for p in params if p not in ("self", "metadata")]


def check_params(model: str, params: dict) -> None:
    """Raise :class:`UserError` for a hyperparameter SDV's synthesizer does not take."""
    allowed = hyperparameters(model)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise UserError(
            f"synth.{unknown[0]} is not a {CLASSES[model]} hyperparameter (synth={model}); choose from "
            f"{', '.join(allowed)}."
        )


def build(model: str, metadata, *, params: dict | None = None, common: dict | None = None):
    """An unfitted SDV synthesizer.

    Args:
        model: ``gaussian_copula``, ``ctgan``, ``tvae`` or ``copulagan``.
        metadata: SDV ``Metadata`` of one table.
        params: the model's own hyperparameters (``synth.<model>.*``); an unknown key is an error.
        common: options shared by SDV's synthesizers (``enforce_min_max_values``, ``locales``...);
            those a model does not take (TVAE has no ``locales``) are left out.

    Raises:
        UserError: an unknown model or hyperparameter.
    """
    cls = synthesizer_class(model)
    allowed = hyperparameters(model)
    params = dict(params or {})
    check_params(model, params)
    kwargs = {k: v for k, v in (common or {}).items() if k in allowed}
    kwargs.update({k: tuple(v) if k in _TUPLES and v is not None else v for k, v in params.items()})
    if "locales" in kwargs and kwargs["locales"] is not None:
        kwargs["locales"] = list(kwargs["locales"])
    if kwargs.get("numerical_distributions") == {}:
        kwargs["numerical_distributions"] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(metadata, **kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"synth.{model}: {' '.join(str(exc).split())[:300]}") from None


def fit(synthesizer, frame: pd.DataFrame, table: str, *, seed: int):
    """Fit on ``frame`` (SDV takes a dict of tables); training is seeded. Returns the synthesizer."""
    import numpy as np

    np.random.seed(seed)
    if type(synthesizer).__name__ in {CLASSES[m] for m in _NEURAL}:
        import torch

        torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synthesizer.fit({table: frame})
    return synthesizer


def sample(synthesizer, table: str, *, num_rows: int, seed: int) -> pd.DataFrame:
    """``num_rows`` rows from a fitted synthesizer, seeded (SDV otherwise uses one fixed seed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(synthesizer, "_set_random_state"):
            synthesizer._set_random_state(seed)
        return synthesizer.sample(num_rows)[table]


def fit_sample(synthesizer, frame: pd.DataFrame, table: str, *, num_rows: int, seed: int) -> pd.DataFrame:
    """Fit on ``frame`` and sample ``num_rows`` rows."""
    fit(synthesizer, frame, table, seed=seed)
    return sample(synthesizer, table, num_rows=num_rows, seed=seed)
