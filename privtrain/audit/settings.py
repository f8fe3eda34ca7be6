"""The audit's settings: the run's ``audit.*`` (from its run record), then explicit arguments."""

from __future__ import annotations

from dataclasses import dataclass, replace

from privtrain.errors import UserError

SHADOW_DATA = ("charged", "pool")
AUDITABLE = ("dp_sgd", "synthetic")
ONE_RUN_MODES = ("whitebox", "blackbox", "both")
ONE_RUN_RECIPES = ("dp_sgd", "federated")
ONE_RUN_DATA = ("auto", "schema")


@dataclass(frozen=True)
class OneRunSettings:
    """Plain values of ``audit.one_run.*``: the one-run audit of a configuration (docs/audit.md).

    Attributes:
        enabled: audit the planned configuration before a ``privtrain run`` reserves any budget; a red
            flag stops the run (exit 3) with nothing charged.
        mode: ``whitebox`` (Dirac canaries in every noisy update, a replay and a structural probe),
            ``blackbox`` (mislabeled canaries scored on the final model) or ``both``.
        canaries: m, capped at the plan's training rows; each is included with probability 1/2.
        confidence: of the ε lower bound, over all the attacks run (Bonferroni).
        replay_steps: steps the replay attack reruns; None: enough that a canary is sampled w.p. 1 - e^-5.
        data: ``auto`` (a built-in's public table, else rows drawn from the public schema) or ``schema``.
    """

    enabled: bool = False
    mode: str = "whitebox"
    canaries: int = 1000
    confidence: float = 0.95
    replay_steps: int | None = None
    data: str = "auto"

    def validate(self) -> OneRunSettings:
        if self.mode not in ONE_RUN_MODES:
            raise UserError(f"audit.one_run.mode={self.mode!r} is unknown; choose one of {', '.join(ONE_RUN_MODES)}.")
        if isinstance(self.canaries, bool) or not isinstance(self.canaries, int) or self.canaries < 20:
            raise UserError(
                f"audit.one_run.canaries={self.canaries!r} must be a whole number >= 20 "
                "(each side needs canaries; 1000 is the default)."
            )
        if not 0.5 <= float(self.confidence) < 1:
            raise UserError(f"audit.one_run.confidence={self.confidence} must lie in [0.5, 1), e.g. 0.95.")
        if self.replay_steps is not None and (isinstance(self.replay_steps, bool) or int(self.replay_steps) < 1):
            raise UserError(f"audit.one_run.replay_steps={self.replay_steps!r} must be >= 1, or null.")
        if self.data not in ONE_RUN_DATA:
            raise UserError(f"audit.one_run.data={self.data!r} is unknown; choose one of {', '.join(ONE_RUN_DATA)}.")
        return self

    def with_overrides(self, **overrides) -> OneRunSettings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).validate()


@dataclass(frozen=True)
class AuditSettings:
    """Plain values of ``audit.*``.

    Attributes:
        enabled: audit right after the run (``privtrain run ... audit.enabled=true``).
        shadow_models: K shadow models for LiRA; 0 runs only the cheap attacks.
        shadow_data: "charged" (shadows train on the private dataset and are charged to the
            ledger), "pool" (shadows train only on the declared ``pool_path``), or None (not
            chosen: an audit that needs shadows is refused).
        pool_path: CSV or Parquet file of audit data, outside the private dataset.
        confidence: confidence level of the ε lower bound.
        seed: randomness of the shadow halves and training; None derives it from the run's seed.
        update_card: append the audit section to the run's ``model_card.md``.
    """

    enabled: bool = False
    shadow_models: int = 4
    shadow_data: str | None = None
    pool_path: str | None = None
    confidence: float = 0.95
    seed: int | None = None
    update_card: bool = True
    one_run: OneRunSettings = OneRunSettings()

    def validate(self) -> AuditSettings:
        k = self.shadow_models
        if not isinstance(k, int) or isinstance(k, bool) or k < 0 or k in (1, 2, 3) or k % 2:
            raise UserError(
                f"audit.shadow_models={k!r} must be 0 (no LiRA) or an even number >= 4, e.g. audit.shadow_models=4."
            )
        if self.shadow_data is not None and self.shadow_data not in SHADOW_DATA:
            raise UserError(f"audit.shadow_data={self.shadow_data!r} is unknown; choose charged or pool.")
        if self.shadow_data == "pool" and not self.pool_path:
            raise UserError(
                "audit.shadow_data=pool needs the audit data: pass audit.pool_path=/path/to/pool.csv "
                "(rows outside the private dataset, same columns)."
            )
        if not 0.5 <= float(self.confidence) < 1:
            raise UserError(f"audit.confidence={self.confidence} must lie in [0.5, 1), e.g. audit.confidence=0.95.")
        self.one_run.validate()
        return self

    def with_overrides(self, **overrides) -> AuditSettings:
        """These settings with every non-None override applied; validated."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "shadow_models" in values:
            values["shadow_models"] = int(values["shadow_models"])
        if "confidence" in values:
            values["confidence"] = float(values["confidence"])
        return replace(self, **values).validate()

    @classmethod
    def from_dict(cls, values: dict | None) -> AuditSettings:
        known = {k: v for k, v in (values or {}).items() if k in cls.__dataclass_fields__}
        if isinstance(known.get("one_run"), dict):
            fields = OneRunSettings.__dataclass_fields__
            known["one_run"] = OneRunSettings(**{k: v for k, v in known["one_run"].items() if k in fields})
        return cls(**known).validate()
