"""``synth.*`` as plain values: the synthesizer (a Hydra group) and the options every synthesizer shares."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SynthSettings:
    """What the synthetic recipe was asked to do.

    Attributes:
        model: the synthesizer (``configs/synth/<model>.yaml``).
        private: True for a DP synthesizer (``dp_gaussian_copula``).
        params: the synthesizer's own settings (e.g. ``epochs``, or ``epsilon`` for a DP one).
        common: options shared by the SDV synthesizers (``enforce_min_max_values``, ...).
    """

    model: str
    private: bool
    params: dict = field(default_factory=dict)
    common: dict = field(default_factory=dict)
    num_rows: int | None = None
    fmt: str = "csv"
    metadata: str | None = None
    pii_check: bool = True
    report: bool = True
    utility: bool = True
    classifier: str = "random_forest"
