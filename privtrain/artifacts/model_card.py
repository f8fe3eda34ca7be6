"""``model_card.md``: what a model is, what it was trained on, and what its guarantee covers, for a reviewer.

The card is rendered from ``templates/model_card.md.j2`` (Jinja2) with plain values. A section that
does not apply to the run is absent: no ledger, no PII scan, no policy or no SBOM means no section.
The card names no path of the machine that trained it: the ledger by its file name, artifacts by
their names in the run directory (:func:`no_paths` is the last step of :func:`render`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from privtrain.artifacts import card_text
from privtrain.artifacts.provenance import git_commit, versions
from privtrain.result import Guarantee

TEMPLATE = "model_card.md.j2"
# Caveats of every private run; each recipe adds its own (held-out split and composition are everyone's).
COMMON_NOT_COVERED = (
    "The held-out evaluation split is the evaluator's data: metrics computed on it are reported, but they are "
    "not covered by the guarantee.",
    "The guarantee bounds what this run's outputs reveal about one {unit}; it says nothing about other releases "
    "of the same data unless they are charged to the same ledger, which composes them.",
)
OPACUS_NOT_COVERED = (
    "The row counts this card reports are facts about the data, not covered by the guarantee; the mechanism does "
    "not depend on them (its sampling rate, divisor and steps come from the declared public size).",
    "Floating-point and pseudo-random number generation are not hardened against side channels "
    "(Opacus secure_mode is off).",
)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/[\w.@+-]+){2,}/?")


def render(
    *,
    recipe: str,
    intended_use: str,
    dataset: dict,
    guarantees: list[Guarantee],
    metrics: dict,
    model: str,
    ledger: dict | None = None,
    lineage: str | None = None,
    mechanism: dict | None = None,
    not_covered: list[str] | tuple[str, ...] = (),
    sbom: dict | None = None,
    pii: dict | list | None = None,
    extra_sections: list[tuple[str, str]] | tuple = (),
    metrics_title: str = "Metrics (held-out split)",
    metrics_note: str = "The held-out split is the evaluator's data: these figures are reported, not covered by "
    "the guarantee.",
) -> str:
    """Markdown text of a model card. Every argument is a plain value.

    Args:
        mechanism: what was done, for the prose (``{"kind": "dp_sgd", "max_grad_norm": ..., ...}``; see
            :func:`privtrain.artifacts.card_text.mechanism_text`); None: no DP.
        not_covered: the recipe's own caveats; the common ones are added when a guarantee is private.
        sbom: :meth:`privtrain.artifacts.sbom.EnvironmentBom.summary`.
        pii: the PII findings; default ``dataset["pii"]`` (the PII gate's record).
    """
    private = any(g.private for g in guarantees)
    unit = guarantees[0].unit if guarantees else "example"
    caveats = [*(t.format(unit=unit) for t in COMMON_NOT_COVERED), *not_covered] if private else []
    context = {
        "recipe": recipe,
        "intended_use": intended_use,
        "model": model,
        "dataset": {
            **{k: dataset.get(k) for k in ("name", "source", "fingerprint", "schema", "evaluated_on")},
            "tags": dataset.get("tags") or (ledger or {}).get("tags"),
            "partition": (dataset.get("population") or {}).get("label"),
        },
        "now": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rows": _rows(dataset),
        "schema_text": _schema(dataset.get("schema")),
        "guarantees": [{"sentence": card_text.guarantee_sentence(g), "notes": list(g.notes)} for g in guarantees],
        "lineage": lineage,
        "mechanism_text": card_text.mechanism_text(mechanism),
        "not_covered": caveats,
        "ledger": _ledger(ledger),
        "pii": card_text.pii_view(pii if pii is not None else dataset.get("pii")),
        "policy": (ledger or {}).get("policy"),
        "governance": (ledger or {}).get("governance"),
        "metrics": _metrics(metrics),
        "metrics_title": metrics_title,
        "metrics_note": metrics_note,
        "extra_sections": list(extra_sections),
        "sbom": sbom,
        "provenance": {
            "privtrain": versions().get("privtrain", "unknown"),
            "commit": git_commit() or "unknown (not a git checkout)",
            "versions": [(k, v) for k, v in versions().items() if k != "privtrain"],
        },
    }
    return no_paths(_environment().get_template(TEMPLATE).render(**context)).rstrip("\n") + "\n"


def no_paths(text: str) -> str:
    """Every absolute path in ``text`` reduced to its last component (a file or folder name)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("privtrain.artifacts", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(short=lambda s: str(s)[:12], code=lambda s: f"`{s}`")
    return env


def _rows(dataset: dict) -> str | None:
    parts = [
        f"{dataset[k]:,} {label}"
        for k, label in (("n_rows", "in the table"), ("n_train", "for training"), ("n_test", "held out for evaluation"))
        if k in dataset
    ]
    return "; ".join(parts) or None


def _schema(schema) -> str:
    return {
        "builtin": "the built-in dataset's known ranges (public)",
        "declared": "declared by the user (public), not read off the rows",
        "inferred": "inferred from the private rows (the guarantee is void unless charged)",
        "sdv-detected": "detected by SDV from the rows",
    }.get(str(schema), str(schema))


def _ledger(ledger: dict | None) -> dict | None:
    if not ledger or not ledger.get("charges"):
        return None
    charges = [
        {
            "where": f"Source `{c['name']}`" + (f", population {c['population']}" if c.get("population") else ""),
            "unit": c["unit"],
            "text": card_text.charge_text(c),
            "link": c.get("link"),
        }
        for c in ledger["charges"]
    ]
    return {
        "file": card_text.ledger_file(ledger.get("path")),
        "entry": ledger.get("entry"),
        "charges": charges,
        "budgeted": any(c.get("budget") is not None for c in ledger["charges"]),
    }


def _metrics(metrics: dict) -> list[tuple[str, str]]:
    out = []
    for key, value in metrics.items():
        if isinstance(value, float):
            out.append((key, f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"))
        elif isinstance(value, (int, str)) and value is not None:
            out.append((key, str(value)))
    return out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
