"""Which policy governs a run on a given ledger, and its verdict on the run's facts.

Every command that charges (a recipe's run, the audit's shadow models) calls :func:`evaluate` before it
reads any row; the ledger's one door then checks each charge against the same evaluation. A ledger that
has recorded a policy stays governed: a run cannot shed the policy by not finding its file, nor replace
the project's policy with another one for one run.
"""

from __future__ import annotations

from privtrain.errors import UserError
from privtrain.policy import consent
from privtrain.policy.check import Evaluation, RunFacts, check_ledger, check_run
from privtrain.policy.file import beside, find, load


def evaluate(book, facts: RunFacts, explicit: str | None) -> Evaluation | None:
    """The policy governing ``book`` (a :class:`privtrain.ledger.Ledger`), judged on ``facts``; None when ungoverned.

    Args:
        explicit: ``ledger.policy=PATH`` (or None: ``$PRIVTRAIN_POLICY``, else ``policy.yaml`` beside the ledger).

    Raises:
        UserError: the policy refuses the run on its facts, or the source's recorded provenance does (purpose,
            retention, region: binding with or without a policy); another policy than the project's; no policy
            found for a ledger that has recorded one.
    """
    recorded = book.provenance(facts.source)  # None: not declared, or a source the ledger does not know yet
    location = None if book.backend != "sqlite" else book.location
    path, project = find(explicit, location), beside(location)
    if project is not None and path is not None and path.resolve() != project.resolve():
        raise UserError(
            f"the project's policy {project} governs this ledger; another policy ({path}) cannot replace "
            "it for one run: change the project's policy instead (the change is recorded)."
        )
    if path is None:
        current = book.policy()
        if current is not None:  # a governed ledger stays governed: a run cannot shed its policy by not finding it
            raise UserError(
                f"the ledger {book.location} is governed by policy {current.get('file')} (sha256 "
                f"{str(current.get('sha256'))[:12]}, entry {current['entry']}) but this run finds no "
                "policy: run it from the project, or name the policy with ledger.policy=PATH "
                "(a policy with no rules lifts them, as a recorded change)."
            )
        consent.check_run(None, facts, recorded)
        return None
    rules = Evaluation(load(path), facts, recorded)
    check_ledger(rules.policy, book)  # a policy that pins the project's ledger refuses any other
    check_run(rules.policy, rules.facts)
    consent.check_run(rules.policy, rules.facts, recorded)
    return rules


def source_name(spec) -> str:
    """The name a policy uses for a dataset (a ``data.DatasetSpec``): a built-in's name, the declared
    ``dataset.source``, else the file's stem (an image folder's name)."""
    from pathlib import Path

    from privtrain.data import BUILTIN

    if spec.loader in BUILTIN:
        return spec.loader
    if spec.source is not None:
        return spec.source
    if spec.path:
        return Path(str(spec.path)).name if spec.loader == "image_folder" else Path(str(spec.path)).stem
    return spec.loader
