"""The release gates a policy's risk class adds (``risk.classes.*.controls``), judged on a finished run.

The config-side controls (ε cap, units, a configured key, monitoring switched on, a one-run audit
configured) already refused the run at planning time when they failed (:mod:`privtrain.policy.check`);
here each control is judged on what the run left behind, so a release never rests on a setting alone:

- **approvals**: N distinct approvers whose chained approvals cover the run's current file hashes and the
  policy in force (:mod:`privtrain.artifacts.approvals`);
- **audit**: ``one_run`` (the configuration's one-run audit, chained and consistent), ``membership``
  (``privtrain audit``: audit.json chained, no red flag), ``any`` (either);
- **encryption**: run.json records the key that encrypted the artifacts (``"encryption"``);
- **monitoring**: the DP reference statistics (``reference_stats.json``) are in the run and chained;
- **fairness gap**: metrics.json's ``fairness.max_gap`` is at most the class's ``max_fairness_gap``
  (no fairness data under a gap control fails: the gap was never measured).

Decision: the run's class is recomputed at release from its recorded facts (the source, the dataset's tags,
the purpose) under the policy in force, not read from the run: the class an officer's current policy gives
is the one whose controls a release must meet, and the policy gate already requires that policy to be the
one the run was checked against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ONE_RUN_REPORT = "one_run_audit/one_run_audit.json"
REFERENCE_STATS = "reference_stats.json"


@dataclass(frozen=True)
class Gate:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'pass' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def classification(current, record, run_dir: Path):
    """The run's risk class under ``current`` (a Policy, or None), from its recorded facts; None: unclassified."""
    from privtrain import policy

    if current is None or current.risk is None:
        return None
    raw = read_json(Path(run_dir) / "run.json")
    purpose = raw.get("purpose") or (raw.get("run") or {}).get("purpose") or _config_purpose(Path(run_dir))
    facts = policy.RunFacts(
        recipe=record.recipe,
        source=record.source.get("name") or record.source.get("key"),
        tags=tuple(record.dataset.get("tags") or ()),
        purpose=purpose,
    )
    return policy.classify(current, facts)


def _config_purpose(run_dir: Path) -> str | None:
    """``run.purpose`` from the run's config.yaml (the settings it ran with), when it set one."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    run = data.get("run") if isinstance(data, dict) else None
    return run.get("purpose") if isinstance(run, dict) else None


def audit_gate(run_dir: Path, hashes: dict[str, str], name: str = "audit", why: str = "the policy") -> Gate:
    """A membership audit (``privtrain audit``): audit.json chained in the ledger, no red flag."""
    audit = read_json(run_dir / "audit.json")
    chained = "audit.json" in hashes
    red = bool(audit.get("red_flag"))
    return Gate(
        name,
        bool(audit) and chained and not red,
        "audited, no red flag"
        if audit and chained and not red
        else f"{why} requires an audit: run privtrain audit RUN_DIR"
        if not audit
        else "audit.json is not chained in the ledger"
        if not chained
        else "the audit raised a red flag: its ε lower bound exceeds the claimed ε",
    )


def one_run_gate(
    run_dir: Path, record, hashes: dict[str, str], name: str = "one-run audit", why: str = "the policy"
) -> Gate:
    """A one-run audit of the configuration (``audit.one_run.enabled``): its report is chained with the run's
    files, it was of this run's configuration (same config hash), and it passed."""
    audit = read_json(run_dir / ONE_RUN_REPORT)
    same = (audit.get("configuration") or {}).get("config_hash") == record.config_hash
    ok = bool(audit) and ONE_RUN_REPORT in hashes and same and audit.get("verdict") == "consistent"
    return Gate(
        name,
        ok,
        f"the configuration's one-run audit shows ε ≥ {audit.get('epsilon_lower_bound', 0):.3g}, within the claim"
        if ok
        else f"{why} requires a one-run audit of the configuration: run it with audit.one_run.enabled=true"
        if not audit
        else f"{ONE_RUN_REPORT} is not chained in the ledger"
        if ONE_RUN_REPORT not in hashes
        else "the one-run audit was of another configuration (config hash differs)"
        if not same
        else f"the one-run audit's verdict is {audit.get('verdict')}, not consistent",
    )


def class_gates(run_dir: Path, book, record, rec, risk, policy_sha: str | None) -> list[Gate]:
    """Every control of the run's risk class ``risk`` (a Classification) that only a release can judge."""
    from privtrain.artifacts import approvals

    c, at = risk.controls, f"class {risk.name}"
    why = f"risk class {risk.name} ({'; '.join(risk.reasons)})"
    out = []
    if c.approvals:
        valid, void = approvals.counted(book, record.run_id, rec.hashes, policy_sha)
        names = ", ".join(a.approver for a in valid) or "none"
        ignored = f"; not counted: {'; '.join(void)}" if void else ""
        out.append(
            Gate(
                f"{at}: approvals",
                len(valid) >= c.approvals,
                f"{len(valid)} of {c.approvals} distinct approvals of these files under this policy "
                f"({names}){ignored}"
                + ("" if len(valid) >= c.approvals else "; ask approvers to run privtrain approve RUN_DIR --as NAME"),
            )
        )
    if c.audit is not None:
        one = one_run_gate(run_dir, record, rec.hashes, f"{at}: audit ({c.audit})", why)
        member = audit_gate(run_dir, rec.hashes, f"{at}: audit ({c.audit})", why)
        if c.audit == "any" and not (one.ok or member.ok):
            one = Gate(
                one.name,
                False,
                f"{why} requires an audit: run privtrain audit RUN_DIR, or the run with audit.one_run.enabled=true",
            )
        out.append(one if c.audit == "one_run" or (c.audit == "any" and not member.ok) else member)
    if c.encryption:
        enc = read_json(run_dir / "run.json").get("encryption")
        out.append(
            Gate(
                f"{at}: encryption",
                isinstance(enc, dict) and bool(enc),
                f"artifacts encrypted (key id {enc.get('key_id')}, {enc.get('algorithm')})"
                if isinstance(enc, dict) and enc
                else f"{why} requires encrypted artifacts and run.json records no encryption key: run it again "
                "with a key configured",
            )
        )
    if c.monitoring:
        present, chained = (run_dir / REFERENCE_STATS).is_file(), REFERENCE_STATS in rec.hashes
        out.append(
            Gate(
                f"{at}: monitoring",
                present and chained,
                "DP reference statistics released and chained"
                if present and chained
                else f"{REFERENCE_STATS} is not chained in the ledger"
                if present
                else f"{why} requires drift monitoring and the run released no {REFERENCE_STATS}: run it again "
                "with monitor.reference=true",
            )
        )
    if c.max_fairness_gap is not None:
        out.append(_fairness_gate(run_dir, c.max_fairness_gap, at, why))
    return out


def _fairness_gate(run_dir: Path, cap: float, at: str, why: str) -> Gate:
    fairness = read_json(run_dir / "metrics.json").get("fairness")
    gap = fairness.get("max_gap") if isinstance(fairness, dict) else None
    if not isinstance(gap, (int, float)) or isinstance(gap, bool):
        return Gate(
            f"{at}: fairness gap",
            False,
            f"{why} caps the per-group accuracy gap at {cap:g} and "
            "metrics.json holds no fairness.max_gap: run it again with dataset.sensitive=[...]",
        )
    return Gate(
        f"{at}: fairness gap",
        gap <= cap,
        f"largest per-group accuracy gap {gap:.3g} {'≤' if gap <= cap else 'exceeds the cap'} {cap:g}",
    )
