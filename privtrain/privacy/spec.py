"""``privacy.*`` as plain values: what the user asked for, before any planning."""

from __future__ import annotations

from dataclasses import dataclass

NAMES = ("dp", "none", "central", "central_local")


@dataclass(frozen=True)
class PrivacySpec:
    """The ``privacy`` group.

    ``dp`` is example-level DP-SGD, ``none`` the non-private baseline, ``central`` client-level
    DP-FedAvg, ``central_local`` both (``local`` holds the example-level DP-SGD block). The unit of
    privacy is not here: it follows from the mechanism.
    """

    name: str
    target_epsilon: float | None = None
    delta: float | None = None
    noise_multiplier: float | None = None
    max_grad_norm: float | None = None
    accountant: str | None = None
    clipping_norm: float | None = None
    clipping_side: str | None = None
    local: PrivacySpec | None = None

    @property
    def private(self) -> bool:
        return self.name != "none"
