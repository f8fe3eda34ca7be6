"""``privtrain release RUN_DIR``: mark a run releasable, or say why it is not.

A run is releasable only when every gate passes:

- **artifacts**: every file matches the hash its ledger entries chained, and its card or report is the one
  its run recorded, plus the audit's own block (``privtrain verify``); otherwise the release is refused
  before any gate, in one line (exit 2): these are not the run's files;
- **ledger**: the ledger's hash chain verifies;
- **policy**: the run was checked against the policy in force now (the hash its entries record);
- **project ledger**: when the policy pins the project's ledger (``ledger: {id, anchor}``), the run was
  charged there: a run on a throwaway ledger has fresh budgets, whatever policy it names;
- **PII gate**: the dataset was scanned and every identifier found was dropped or declared
  (required when the policy asks for a scan);
- **audit**: when a rule covering the source requires one, the run was audited (``audit.json``,
  its hashes chained) and the audit raised no red flag.
- **one-run audit**: when a rule requires one (``require_one_run_audit``), the run audited its own
  configuration first (``audit.one_run.enabled=true``): its report is chained with the run's files,
  names this run's config hash, and is consistent with the claim.

On success it writes ``release.json``, the signed-off manifest: the artifact hashes, the ledger's
head, the policy's hash, each gate's verdict, who and when; an HMAC with ``$PRIVTRAIN_LEDGER_KEY``
when set; and chains the manifest's hash into the ledger (an ``artifacts`` entry), so ``privtrain
verify`` covers it too. On failure it writes nothing and prints one line per failed gate (exit 1).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

from privtrain.artifacts.release_gates import Gate, audit_gate, one_run_gate
from privtrain.artifacts.release_gates import read_json as _read_json
from privtrain.errors import UserError

MANIFEST = "release.json"


def gates(run_dir: Path, book, record, rec, policy_path: Path | None) -> list[Gate]:
    """Every gate's verdict for the run in ``run_dir`` (see the module docstring); ``rec`` is what its ledger
    recorded (:class:`~privtrain.artifacts.evidence.Recorded`)."""
    from privtrain import policy
    from privtrain.artifacts import evidence, release_gates

    out = []
    hashes = rec.hashes
    bad = evidence.problems(run_dir, rec)
    out.append(Gate("artifacts", not bad, f"all {len(hashes)} files match the ledger" if not bad else "; ".join(bad)))
    report = book.verify()
    out.append(
        Gate(
            "ledger",
            report.ok,
            f"hash chain intact ({report.n_entries} entries)"
            if report.ok
            else f"the ledger does not verify: {report.problem}",
        )
    )
    entries = [e for e in book.entries() if e.run_id == record.run_id and e.status == "committed"]
    recorded = {e.detail.get("policy") for e in entries}
    current = policy.load(policy_path) if policy_path is not None else None
    source = record.source.get("name") or record.source.get("key")
    rules = current.rules_for(source, tuple(record.dataset.get("tags") or ())) if current else []
    in_force = book.policy()  # the policy the ledger last recorded: what governs it now
    if current is None:
        ok = recorded == {None} and in_force is None
        out.append(
            Gate(
                "policy",
                ok,
                "no policy governs this project"
                if ok
                else "the run or the ledger names a policy that is not found here; restore it or name it with --policy",
            )
        )
    elif in_force is not None and in_force.get("sha256") != current.sha256:
        out.append(
            Gate(
                "policy",
                False,
                f"{current.label} (sha256 {current.sha256[:12]}) is not the policy the "
                f"ledger records as in force ({str(in_force.get('sha256'))[:12]}, entry {in_force['entry']})",
            )
        )
    else:
        ok = recorded == {current.sha256}
        out.append(
            Gate(
                "policy",
                ok,
                f"checked against {current.label} (sha256 {current.sha256[:12]}), "
                f"{len(rules)} rule(s) on source {source!r}"
                if ok
                else f"the run was checked against another policy ({', '.join(sorted(str(r)[:12] for r in recorded))}),"
                f" not the one in force ({current.sha256[:12]}); run it again under the current policy",
            )
        )
    if current is not None and current.ledger_id is not None:  # the policy pins the project's ledger
        problem = policy.ledger_problem(current, book)
        out.append(
            Gate(
                "project ledger",
                problem is None,
                f"charged to the ledger {current.label} pins "
                f"(id {current.ledger_id[:12]}{', extends its anchor' if current.ledger_anchor else ''})"
                if problem is None
                else problem,
            )
        )
    pii = (_read_json(run_dir / "metrics.json").get("dataset") or {}).get("pii")
    out.append(_pii_gate(pii, required=any(r.require_pii_scan for r in rules)))
    if any(r.require_audit for r in rules):
        out.append(audit_gate(run_dir, hashes))
    if any(r.require_one_run_audit for r in rules):
        out.append(one_run_gate(run_dir, record, hashes))
    risk = release_gates.classification(current, record, run_dir)
    if risk is not None and current is not None:
        out += release_gates.class_gates(run_dir, book, record, rec, risk, current.sha256)
    return out


def _pii_gate(pii, *, required: bool) -> Gate:
    if not isinstance(pii, dict) or not pii.get("scanned"):
        return Gate(
            "PII gate",
            not required,
            "the dataset was not scanned (a policy requires it)" if required else "not scanned (no rule requires it)",
        )
    allowed = set(pii.get("allowed") or ())
    open_findings = [f for f in pii.get("findings") or () if f.get("column") not in allowed]
    if open_findings:
        return Gate(
            "PII gate",
            False,
            "identifiers trained on without a declaration: " + ", ".join(str(f.get("column")) for f in open_findings),
        )
    declared = f"; declared: {', '.join(sorted(allowed))}" if allowed else ""
    return Gate("PII gate", True, f"scanned, no undeclared identifier{declared}")


def release(
    run_dir: Path, *, ledger_path: str | None = None, policy_path: str | None = None
) -> tuple[list[Gate], Path | None]:
    """Check every gate; on success write and chain the manifest. Returns (gates, manifest or None)."""
    from privtrain import policy
    from privtrain.artifacts import approvals, evidence, release_gates
    from privtrain.artifacts.record import RunRecord
    from privtrain.artifacts.verify import run_evidence
    from privtrain.ledger import integrity

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    if (run_dir / MANIFEST).exists():
        raise UserError(f"{run_dir / MANIFEST} exists: this run was already released.")
    record = RunRecord.read(run_dir)
    book, rec = run_evidence(run_dir, ledger_path)
    if MANIFEST in rec.hashes:
        raise UserError(
            f"run {rec.run_id} was already released (its {MANIFEST} is chained in the ledger "
            f"{rec.ledger}) and {run_dir / MANIFEST} is gone: restore it; a run is released once."
        )
    # Evidence first: a card or report that differs from what the run recorded is not a gate that may fail
    # among others, it means the files under review are not the run's.
    evidence.require_intact(run_dir, rec, command="privtrain release")
    run_id, hashes, path = rec.run_id, rec.hashes, rec.ledger
    found = policy.find(policy_path, book.location if book.backend == "sqlite" else None)
    checks = gates(run_dir, book, record, rec, found)
    if not all(g.ok for g in checks):
        return checks, None
    current = None if found is None else policy.load(found)
    risk = release_gates.classification(current, record, run_dir)
    valid, _ = approvals.counted(book, run_id, hashes, None if current is None else current.sha256)
    head_id, head_hash = book.head()
    manifest = {
        "run_id": run_id,
        "recipe": record.recipe,
        "source": record.source.get("name"),
        "releasable": True,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "released_by": getpass.getuser(),
        "artifacts": dict(sorted(hashes.items())),
        "ledger": {"file": Path(str(path)).name, "head_entry": head_id, "head_hash": head_hash},
        "policy": None if current is None or found is None else {"file": found.name, "sha256": current.sha256},
        "gates": [{"name": g.name, "ok": g.ok, "detail": g.detail} for g in checks],
        "risk_class": None
        if risk is None
        else {"name": risk.name, "reasons": list(risk.reasons), "controls": risk.controls.demands()},
        "approvals": [a.to_dict() for a in valid],
    }
    body = json.dumps(manifest, sort_keys=True)
    key = integrity.ledger_key()
    manifest["signature"] = (
        None
        if key is None
        else {"hmac_sha256": hmac.new(key, body.encode(), hashlib.sha256).hexdigest(), "key": "$PRIVTRAIN_LEDGER_KEY"}
    )
    target = run_dir / MANIFEST
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    evidence.rechain(book, run_dir, rec, [MANIFEST], why="release: every gate passed")
    return checks, target


def _cmd(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not (args.register and (run_dir / MANIFEST).exists()):  # a released run is registered as it was released
        checks, manifest = release(run_dir, ledger_path=args.ledger, policy_path=args.policy)
        for g in checks:
            print(f"  {g.line()}")
        if manifest is None:
            failed = [g.name for g in checks if not g.ok]
            print(f"not releasable: {', '.join(failed)} failed; nothing was written")
            return 1
        print(f"releasable: manifest {manifest} (its hash chained in the ledger)")
    if args.register:
        from privtrain.artifacts import registry

        entry = registry.register_release(run_dir, uri=args.registry_uri, name=args.name, ledger_path=args.ledger)
        print(registry.describe(entry))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "release",
        help="mark a run releasable when policy, PII gate, audit and artifacts pass",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("run_dir", help="output directory of a finished run")
    p.add_argument("--ledger", default=None, metavar="PATH", help="the run's ledger (default: the one it used)")
    p.add_argument("--policy", default=None, metavar="PATH", help="the policy (default: the one beside the ledger)")
    p.add_argument(
        "--register",
        action="store_true",
        help="push the released run to the MLflow Model Registry "
        "(a run already released is registered as released; see docs/governance/registry.md)",
    )
    p.add_argument(
        "--registry-uri",
        default=None,
        metavar="URI",
        help="MLflow tracking/registry URI (default: sqlite:///<the ledger's folder>/registry.db)",
    )
    p.add_argument(
        "--name", default=None, metavar="MODEL", help="registered model name (default: privtrain-<source>-<recipe>)"
    )
    p.set_defaults(func=_cmd)
