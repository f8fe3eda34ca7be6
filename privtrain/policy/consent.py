"""A run against its source's recorded provenance: purpose, retention, residency, and a policy that requires them.

Two steps, like the rules (:mod:`privtrain.policy.check`):

1. :func:`check_run` before any row is read, on the provenance recorded for the run's source by name;
2. :func:`check_charges` at admission, for every charged source: a table linked by content to a source
   (a renamed or rescaled copy) is charged to it, so that source's consent binds the run too.

Recorded provenance binds every run on its source, governed by a policy or not (the facts are about the
data, not about a project's rules). A policy adds ``require_provenance: true`` (the source must have declared
who collected it, on what basis and for which purposes) and may narrow a source's regions
(``sources: {NAME: {regions: [...]}}``). A refusal is one line naming the source, the fact and the fix.
"""

from __future__ import annotations

from privtrain.errors import UserError
from privtrain.ledger.consent import Provenance, judge
from privtrain.policy.check import Finding, RunFacts
from privtrain.policy.file import Policy

FIX = (
    "state a consented purpose (run.purpose=...) and an allowed region (site.region=..., fl.regions=[...]), or "
    "record a decision that changes the source's provenance (privtrain ledger provenance set SOURCE ... "
    "--reason TEXT)"
)


def findings(
    policy: Policy | None,
    facts: RunFacts,
    prov: Provenance | None,
    source: str | None = None,
    tags: tuple[str, ...] | None = None,
) -> list[Finding]:
    """Every provenance demand on a run charged to ``source`` (default: the run's own source).

    Args:
        prov: the provenance recorded for that source (None: none).
        tags: the run's declared tags when ``source`` is the run's own source (else none apply).
    """
    source = source or facts.source
    tags = facts.tags if tags is None else tags
    scope = (
        f"declared in ledger entry {prov.entry}" + (f" by {prov.user}" if prov.user else "")
        if prov is not None
        else "declared provenance"
    )
    out = [
        Finding(f"provenance of {source}", scope, v.demand, v.ok, v.why)
        for v in judge(
            prov,
            purpose=facts.purpose,
            region=facts.region,
            node_regions=facts.node_regions,
            extra_regions=None if policy is None else policy.source_regions.get(source),
        )
    ]
    for rule in [] if policy is None else policy.rules_for(source, tags):
        if rule.require_provenance:
            missing = [
                w
                for w, v in (
                    ("who collected it", prov and prov.collected_by),
                    ("its legal basis or consent", prov and prov.basis),
                    ("its purposes", prov and prov.purposes),
                )
                if not v
            ]
            out.append(
                Finding(
                    rule.name,
                    rule.scope(),
                    "declared provenance (collector, basis, purposes)",
                    not missing,
                    f"the ledger records {prov.describe()}"
                    if prov is not None and not missing
                    else f"the ledger records no {', no '.join(missing)} for source {source!r}",
                )
            )
    return out


def check_run(policy: Policy | None, facts: RunFacts, prov: Provenance | None) -> None:
    """Step 1, before any row is read: refuse a run its source's recorded provenance does not allow.

    Raises:
        UserError: one line naming the source, the fact and the fix; nothing read or charged.
    """
    failed = next((f for f in findings(policy, facts, prov) if not f.ok), None)
    if failed is not None:
        raise UserError(refusal(failed, facts.source, "Nothing was read or charged"))


def check_charges(policy: Policy | None, charges, facts: RunFacts | None, provenance_of) -> None:
    """Step 2, at admission: every charged source's provenance against the run (``provenance_of(key)``).

    Derived (DP synthetic) tables are post-processing: their runs charge nothing to the parent and are not
    bound by its consent (docs/governance/provenance.md).

    Raises:
        UserError: one line naming the charged source (and why it is charged); nothing charged.
    """
    facts = facts or RunFacts("?", "?")
    for c in charges:
        if c.parent is not None:
            continue
        tags = facts.tags if c.source_name == facts.source else ()
        failed = next(
            (f for f in findings(policy, facts, provenance_of(c.source), c.source_name, tags) if not f.ok), None
        )
        if failed is not None:
            raise UserError(refusal(failed, c.source_name, "Nothing was charged", link=c.link))


def refusal(f: Finding, source: str, consequence: str, link: str | None = None) -> str:
    why = f" (charged because {link})" if link else ""
    return (
        f"{f.rule!r} ({f.scope}) refuses this run on source {source!r}{why}: {f.demand}, but {f.why}. "
        f"{consequence}; {FIX}."
    )


def summary(book, charges: list[dict], facts: RunFacts, policy: Policy | None) -> dict:
    """What the card, run.json and metrics.json state: the run's purpose and region, the provenance of every
    charged source, and the regions the run's data may be processed in (None: anywhere).

    Args:
        book: the ledger (:class:`privtrain.ledger.Ledger`); ``charges``: the run summary's charges.
    """
    from privtrain.ledger.consent import allowed_regions

    declared, allowed = {}, None
    for c in charges:
        prov = book.provenance(c["source"])
        where = allowed_regions(prov, None if policy is None else policy.source_regions.get(c["name"]))
        if where is not None:
            allowed = where if allowed is None else tuple(r for r in allowed if r in where)
        if prov is not None:
            declared[c["name"] or c["source"][:12]] = prov.summary()
    return {
        "purpose": facts.purpose,
        "region": facts.region,
        "provenance": declared,
        "allowed_regions": None if allowed is None else list(allowed),
    }
