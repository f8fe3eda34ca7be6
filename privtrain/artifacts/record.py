"""``run.json``: the typed record of a run, what recipes write and what the audit reads.

It holds the typed settings the run used (never a config object), the source it was charged to,
its guarantees, and where its outputs are, so a later reader (``privtrain audit``) rebuilds exactly
the run's data, split and model without Hydra.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from privtrain.errors import UserError

RECORD = "run.json"
VERSION = 1


@dataclass(frozen=True)
class RunRecord:
    """A finished run, as plain values.

    Attributes:
        dataset: the :class:`~privtrain.data.DatasetSpec` as a dict.
        source: ``{"key", "name", "kind"}`` of the source the run's table belongs to.
        guarantees: the run's guarantees (``Guarantee.to_dict()``), its own last.
        ledger: ``{"path", "allow_non_private", "default_budget"}``.
        model, train: the model spec and the resolved training settings (trained models).
        dp: the DP-SGD mechanism (noise multiplier, sample rate, steps, clipping, accountant, δ).
        outputs: files of the run, relative to its directory (``checkpoint``, ``rows``) and the target.
        encryption: the key id and algorithm its sealed files were written under (None: none sealed).
    """

    recipe: str
    run_id: str
    seed: int
    config_hash: str
    fingerprint: str
    source: dict
    dataset: dict
    guarantees: list
    audit: dict
    ledger: dict
    model: dict | None = None
    train: dict | None = None
    dp: dict | None = None
    outputs: dict = field(default_factory=dict)
    schema: dict | None = None  # the public preprocessing (privtrain.load uses it to predict)
    version: int = VERSION
    encryption: dict | None = (
        None  # {"key_id", "algorithm"} when the run sealed its artifacts (privtrain.artifacts.sealed)
    )

    def write(self, run_dir: Path) -> Path:
        from privtrain.artifacts import sealed
        from privtrain.artifacts.run_dir import write_json

        data = asdict(self)
        data["encryption"] = data["encryption"] or sealed.record()  # the key the running run seals with
        return write_json(Path(run_dir) / RECORD, data)

    @property
    def own_guarantee(self) -> dict:
        """The run's own guarantee on its training rows (not one inherited through lineage)."""
        return self.guarantees[-1]

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        """Read ``run_dir/run.json``.

        Raises:
            UserError: not a run directory written by this privtrain.
        """
        file = Path(run_dir) / RECORD
        if not file.is_file():
            raise UserError(
                f"{run_dir}: no {RECORD}; pass the output directory of a finished privtrain run "
                "(runs of privtrain 0.1 have none: re-run them)."
            )
        try:
            data = json.loads(file.read_text())
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')}")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise UserError(
                f"{file} is not a privtrain run record ({exc}); audit an unmodified run directory."
            ) from None
