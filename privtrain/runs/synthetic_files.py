"""What a finished synthetic run writes besides its rows: :class:`~privtrain.artifacts.run_files.RunFiles`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from privtrain.artifacts import run_files
from privtrain.runs.synthetic import card_args


def output_info(files: list, child, rows, derived) -> dict:
    """What the card, metrics.json and the result say about the released rows (path, fingerprint, lineage)."""
    return {
        "path": str(files[0]),
        "fingerprint": child.fingerprint,
        "n_rows": len(rows),
        "target": child.target,
        "metadata": str(files[1]),
        "schema": str(files[2]),
        "lineage": derived.describe(),
    }


def run_files_of(
    s, reserved, access, ledger_info: dict, info: dict, guarantee, public: dict, output_info: dict, findings: list, dp
) -> run_files.RunFiles:
    """config.yaml, run.json, metrics.json and the card of a synthetic run (its rows are written already)."""
    syn = s.synth
    return run_files.RunFiles(
        "synthetic",
        s,
        reserved,
        access,
        ledger_info,
        info,
        [guarantee],
        public,
        record={"outputs": {"rows": Path(output_info["path"]).name, "target": output_info["target"]}},
        metrics_json={
            "synthesizer": syn.model,
            "output": output_info,
            "pii": [f.to_dict() for f in findings],
            "non_dp_releases": [k for k in ("quality", "privacy", "utility") if k in public],
            "dp": dataclasses.asdict(dp) if dp else None,
        },
        card=card_args(syn, dp, guarantee, info, findings, public, output_info),
    )
