"""The audit's settings: ``configs/audit/default.yaml``, then the run's ``audit`` section, then arguments."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from privtrain.errors import UserError

SHADOW_DATA = ("charged", "pool")


@dataclass(frozen=True)
class AuditSettings:
    """Plain values of ``audit.*``.

    Attributes:
        shadow_models: K shadow models for LiRA; 0 runs only the cheap attacks.
        shadow_data: "charged" (shadows train on the private dataset and are charged to the
            ledger), "pool" (shadows train only on the declared ``pool_path``), or None (not
            chosen: an audit that needs shadows is refused).
        pool_path: CSV or Parquet file of audit data, outside the private dataset.
        confidence: confidence level of the ε lower bound.
        seed: randomness of the shadow halves and training; None derives it from the run's seed.
        update_card: append the audit section to the run's ``model_card.md``.
    """

    shadow_models: int = 4
    shadow_data: str | None = None
    pool_path: str | None = None
    confidence: float = 0.95
    seed: int | None = None
    update_card: bool = True

    def validate(self) -> "AuditSettings":
        k = self.shadow_models
        if not isinstance(k, int) or isinstance(k, bool) or k < 0 or k in (1, 2, 3) or k % 2:
            raise UserError(f"audit.shadow_models={k!r} must be 0 (no LiRA) or an even number >= 4, "
                            "e.g. audit.shadow_models=4.")
        if self.shadow_data is not None and self.shadow_data not in SHADOW_DATA:
            raise UserError(f"audit.shadow_data={self.shadow_data!r} is unknown; choose charged or pool.")
        if self.shadow_data == "pool" and not self.pool_path:
            raise UserError("audit.shadow_data=pool needs the audit data: pass audit.pool_path=/path/to/pool.csv "
                            "(rows outside the private dataset, same columns).")
        if not 0.5 <= float(self.confidence) < 1:
            raise UserError(f"audit.confidence={self.confidence} must lie in [0.5, 1), e.g. audit.confidence=0.95.")
        return self


_FIELDS = {"shadow_models", "shadow_data", "pool_path", "confidence", "seed", "update_card"}


def default_node() -> dict:
    """``configs/audit/default.yaml`` as a plain dict."""
    from omegaconf import OmegaConf

    from privtrain.config import config_dir

    return OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "audit" / "default.yaml"), resolve=True)


def resolve(run_audit: dict | None, **overrides) -> AuditSettings:
    """Defaults, then the run's own ``audit`` section, then non-None ``overrides``; validated."""
    values = {k: v for k, v in default_node().items() if k in _FIELDS}
    values.update({k: v for k, v in (run_audit or {}).items() if k in _FIELDS})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        values["shadow_models"] = int(values["shadow_models"])
        values["confidence"] = float(values["confidence"])
    except (TypeError, ValueError):
        raise UserError("audit.shadow_models must be an integer and audit.confidence a number.") from None
    if values.get("seed") is not None:
        values["seed"] = int(values["seed"])
    return replace(AuditSettings(), **values).validate()
