"""Synthetic data: SDV synthesizers, a DP Gaussian-copula synthesizer, PII handling and reports.

Modules, one job each:

- :mod:`~privtrain.synthetic.pii`: privtrain's own PII check (column name + content), on top of SDV's.
- :mod:`~privtrain.synthetic.metadata`: SDV metadata: detected, loaded from a reviewed JSON, or built
  from a public schema; PII columns marked so SDV anonymizes them.
- :mod:`~privtrain.synthetic.sdv_models`: SDV's synthesizers (non-DP: their outputs carry ε = ∞).
- :mod:`~privtrain.synthetic.dp_copula`: a DP Gaussian copula with a formal (ε, δ) guarantee.
- :mod:`~privtrain.synthetic.utility`: TSTR vs TRTR with one classifier.
- :mod:`~privtrain.synthetic.reports`: quality, diagnostic, DCR protection; ``report.md`` and PNGs.
- :mod:`~privtrain.synthetic.output`: writing the rows and the schema that ``dataset=synthetic`` reads.

Importing this package imports neither SDV nor torch; the modules that need them import them lazily.
"""

SDV_MODELS = ("gaussian_copula", "ctgan", "tvae", "copulagan")
DP_MODELS = ("dp_gaussian_copula",)
MODELS = (*SDV_MODELS, *DP_MODELS)

_CHATTY_LOGGERS = (
    "SingleTableSynthesizer",
    "MultiTableSynthesizer",
    "Metadata",
    "SingleTableMetadata",
    "MultiTableMetadata",
    "sdv",
    "copulas",
    "rdt",
    "sdmetrics",
    "ctgan",
    "faker",
)


def quiet_logs() -> None:
    """SDV and its libraries log every fit at INFO; under Hydra that floods the console and run log."""
    import logging

    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
