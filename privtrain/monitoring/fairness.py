"""Fairness on the held-out split: per-group accuracy for declared sensitive attributes, the largest gap, and
the per-group cost of privacy against a non-private baseline of the same configuration.

Decisions (docs/governance/fairness.md):

- ``dataset.sensitive=[sex, age_band]`` names columns of the table whose categories the schema declares
  (``dataset.schema.sex: {categories: [F, M]}``). They are grouping columns; they are model features only
  if ``dataset.features`` makes them so (leaving them out is not a fairness remedy, so privtrain does not
  drop them on its own).
- Groups are the declared categories of each attribute, one attribute at a time (marginal groups). A
  value outside the declared categories joins no group.
- The held-out split is the evaluator's data: these figures are not covered by the run's guarantee,
  like every metric. Group sizes are rounded to 10; a group with fewer than ``MIN_GROUP`` held-out
  rows has its accuracy withheld (too few rows for a number anyone should act on) and no part in the gap.
- The gap is the largest difference in accuracy between two reported groups of one attribute, over
  all attributes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from privtrain.errors import UserError

MIN_GROUP = 20
LABEL = "the held-out split (the evaluator's data, not covered by the guarantee)"
IGNORED_FOR_BASELINE = ("privacy", "ledger", "tracking", "audit", "monitor", "reproducible_noise", "device", "resume")


def categories(sensitive: tuple[str, ...], declared: dict | None, frame_columns) -> dict[str, tuple]:
    """The declared categories of every sensitive attribute (checked before any charge).

    Raises:
        UserError: an attribute that is not a column of the table, or whose categories are not declared.
    """
    out = {}
    for name in sensitive:
        if name not in frame_columns:
            raise UserError(
                f"dataset.sensitive: {name!r} is not a column of the table; name columns of the file "
                "(e.g. dataset.sensitive=[sex,age_band])."
            )
        decl = (declared or {}).get(name)
        if not isinstance(decl, dict) or not decl.get("categories"):
            raise UserError(
                f"dataset.sensitive: declare the categories of {name!r} in the schema, e.g. "
                f"+dataset.schema.{name}='{{categories: [a, b]}}' (groups come from public facts)."
            )
        out[name] = tuple(decl["categories"])
    return out


def report(attributes: dict[str, tuple], frame, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """``metrics.json["fairness"]``: per-group accuracy on the held-out rows ``frame`` and the largest gap.

    Args:
        attributes: each sensitive attribute's declared categories.
        frame: the held-out rows (raw columns), aligned with ``y_true`` and ``y_pred`` (class codes).
    """
    from privtrain.data.encode import category_codes

    correct = np.asarray(y_true) == np.asarray(y_pred)
    groups: dict[str, dict] = {}
    gaps = []
    for name, cats in attributes.items():
        codes = category_codes(frame[name], cats, f"column {name!r}")
        per: dict[str, dict[str, int | float | str]] = {}
        for i, cat in enumerate(cats):
            mask = codes == i
            n = int(mask.sum())
            entry: dict[str, int | float | str] = {"n": round(n, -1)}
            if n >= MIN_GROUP:
                entry["accuracy"] = round(float(correct[mask].mean()), 4)
            else:
                entry["withheld"] = f"fewer than {MIN_GROUP} held-out rows"
            per[str(cat)] = entry
        groups[name] = per
        accs = [a for g in per.values() if isinstance(a := g.get("accuracy"), float)]
        if len(accs) >= 2:
            gaps.append(max(accs) - min(accs))
    return {
        "attributes": list(attributes),
        "groups": groups,
        "max_gap": round(max(gaps), 4) if gaps else None,
        "evaluated_on": LABEL,
        "min_group": MIN_GROUP,
    }


def comparable_hash(config_yaml: str) -> str:
    """A hash of the configuration without its privacy group and settings that do not change the model's data,
    architecture or training (ledger, tracking, audit, monitor, device): equal for a DP run and its baseline."""
    import yaml

    cfg = yaml.safe_load(config_yaml) or {}
    kept = {k: v for k, v in cfg.items() if k not in IGNORED_FOR_BASELINE and k != "hydra"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def find_baseline(out: Path, comparable: str, ledger_path: str | None) -> dict | None:
    """A non-private baseline of the same configuration: a sibling run directory whose ``metrics.json`` has the
    same comparable hash, whose run is committed in this ledger with that very file, and which ran without DP.
    Returns its fairness report with its run id, or None."""
    from privtrain.artifacts.run_dir import sha256_file
    from privtrain.artifacts.verify import recorded_hashes

    for metrics in sorted(Path(out).parent.glob("*/metrics.json")):
        if metrics.parent == Path(out):
            continue
        try:
            doc = json.loads(metrics.read_text())
            fair = doc.get("fairness") or {}
            if fair.get("comparable") != comparable or doc.get("dp") is not None:
                continue
            run_id, hashes, _ = recorded_hashes(metrics.parent, ledger_path)
        except (OSError, ValueError, UserError):
            continue
        if hashes.get("metrics.json") == sha256_file(metrics) and math.isinf(float(doc["guarantee"]["epsilon"])):
            return {"run_id": run_id, **fair}
    return None


def cost_of_privacy(private: dict, baseline: dict) -> dict:
    """Per group: the baseline's accuracy minus this run's (positive: privacy cost that group accuracy)."""
    out: dict[str, dict] = {}
    for name, per in private["groups"].items():
        base = baseline.get("groups", {}).get(name, {})
        out[name] = {
            cat: round(base[cat]["accuracy"] - g["accuracy"], 4)
            for cat, g in per.items()
            if "accuracy" in g and "accuracy" in base.get(cat, {})
        }
    return {"baseline_run": baseline["run_id"], "accuracy_drop": out}


def card_section(fair: dict) -> str:
    """The card's Fairness section (Markdown)."""
    lines = [
        "## Fairness",
        "",
        (
            f"Per-group accuracy on {fair['evaluated_on']}, for the declared sensitive attributes "
            f"{', '.join(fair['attributes'])}. Group sizes are rounded to 10; groups under {fair['min_group']} "
            "held-out rows are withheld."
        ),
        "",
    ]
    cost = (fair.get("cost_of_privacy") or {}).get("accuracy_drop", {})
    head = "| Attribute | Group | Held-out rows | Accuracy |" + (" Cost of privacy |" if cost else "")
    lines += [head, "|---|---|---|---|" + ("---|" if cost else "")]
    for name, per in fair["groups"].items():
        for cat, g in per.items():
            acc = f"{g['accuracy']:.3f}" if "accuracy" in g else "withheld"
            row = f"| {name} | {cat} | ~{g['n']} | {acc} |"
            if cost:
                drop = cost.get(name, {}).get(cat)
                row += f" {drop:+.3f} |" if drop is not None else " – |"
            lines.append(row)
    gap = fair["max_gap"]
    lines += [
        "",
        f"Largest accuracy gap between groups: **{gap:.3f}**."
        if gap is not None
        else "Largest accuracy gap: not computed (fewer than two reported groups).",
    ]
    if cost:
        lines.append(
            f"Cost of privacy: accuracy of the non-private baseline run {fair['cost_of_privacy']['baseline_run']} "
            "(same configuration, privacy=none) minus this run's, per group (positive: DP cost that group)."
        )
    return "\n".join(lines) + "\n"
