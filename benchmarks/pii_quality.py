"""PII detector quality, privtrain's vs SDV's, and the time the PII scan adds to ``privtrain run dp_sgd``.

    python benchmarks/pii_quality.py                 # 1,000 rows per column, seed 0, 3 timed runs
    python benchmarks/pii_quality.py --rows 300 --repeats 1

Quality: one generated table (Faker, seeded) holds, for each identifier kind, three columns of 1,000
values: one under an obvious name (``email``, ``phone``...) and two under neutral names (``col_N`` and a
business-like name such as ``contact`` or ``customer``), plus decoy columns that are not identifiers
(measurements, numeric IDs-like values, categorical codes, random digit strings, IBAN-shaped strings with
wrong check digits, short category labels, recent dates, short labels). The table is written to CSV and
read back, so dtypes are what the gate sees. Per kind: recall (obvious names, neutral names) and precision
for privtrain's detector (:mod:`privtrain.data.pii`) and for SDV 2.0's ``Metadata.detect_from_dataframes``
(which types a column from its name alone; a unique column may become the primary key, typed ``id``).
A column counts as found when the detector names the right kind; "any" counts any PII verdict.

Time: ``privtrain run dp_sgd`` in this process on the default digits dataset and on a clean CSV
(10,000 rows, 20 columns: numbers, codes, short labels), with the gate's ``check`` timed from inside; the
ratio is scan time / whole run time, median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from common import machine, out_dir

RESULTS = Path(__file__).resolve().parent / "results" / "pii_quality"
# kind -> (obvious name, business-like neutral name)
NAMES = {
    "email": ("email", "contact"),
    "phone": ("phone_number", "reach_at"),
    "person_name": ("full_name", "customer"),
    "ssn": ("ssn", "tax_ref"),
    "ni_number": ("ni_number", "gov_ref"),
    "iban": ("iban", "account"),
    "credit_card": ("credit_card_number", "payment"),
    "ipv4": ("ipv4_address", "last_seen_from"),
    "ipv6": ("ipv6_address", "device"),
    "street_address": ("street_address", "location"),
    "date_of_birth": ("date_of_birth", "d1"),
    "free_text": ("notes_text", "remarks"),
}
# SDV's sdtype -> privtrain's kind (SDV has no NI number, date of birth or free text sdtype).
SDV_KIND = {
    "email": "email",
    "phone_number": "phone",
    "name": "person_name",
    "first_name": "person_name",
    "last_name": "person_name",
    "ssn": "ssn",
    "iban": "iban",
    "credit_card_number": "credit_card",
    "ipv4_address": "ipv4",
    "ipv6_address": "ipv6",
    "street_address": "street_address",
    "address": "street_address",
}


def identifier_makers(seed: int) -> dict:
    """kind -> a function drawing one generated identifier of that kind (Faker, seeded). tests/test_pii.py uses it."""
    from faker import Faker

    fake, uk = Faker("en_US"), Faker("en_GB")
    fake.seed_instance(seed)
    uk.seed_instance(seed)
    rng = np.random.default_rng(seed)
    return {
        "email": fake.email,
        "phone": fake.phone_number,
        "person_name": fake.name,
        "ssn": fake.ssn,
        # Faker's en_GB NI numbers use the reserved prefix ZZ, which HMRC never issues: draw issued prefixes.
        "ni_number": lambda: uk.bothify(
            f"{rng.choice(['AB', 'CE', 'JK', 'PR', 'WX'])} ## ## ## {rng.choice(list('ABCD'))}"
        ),
        "iban": fake.iban,
        "credit_card": fake.credit_card_number,
        "ipv4": fake.ipv4,
        "ipv6": fake.ipv6,
        "street_address": fake.street_address,
        "date_of_birth": lambda: str(fake.date_of_birth()),
        "free_text": lambda: fake.paragraph(nb_sentences=3),
        "_faker": lambda: fake,
    }


def generate(rows: int, seed: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table and each column's true kind (``none`` for decoys)."""
    make = identifier_makers(seed)
    fake = make.pop("_faker")()
    rng = np.random.default_rng(seed + 1)
    columns, truth = {}, {}
    for i, (kind, (obvious, business)) in enumerate(NAMES.items()):
        for name in (obvious, f"col_{i}", business):
            columns[name] = [make[kind]() for _ in range(rows)]
            truth[name] = kind
    visit = pd.Timestamp("2022-01-01")
    decoys = {
        "weight_kg": rng.normal(70, 12, rows).round(1),
        "sensor_id": rng.integers(1000, 99999, rows),
        "order_no": rng.integers(10**9, 10**10, rows),
        "card16": rng.integers(10**15, 10**16, rows),
        "col_d1": [str(v) for v in rng.integers(10**15, 10**16, rows)],
        "col_d2": [str(v).zfill(9) for v in rng.integers(0, 10**9, rows)],
        "col_d3": [f"GB{a:02d}WEST{b:014d}" for a, b in zip(rng.integers(0, 100, rows), rng.integers(0, 10**14, rows))],
        "icd_code": rng.choice(["E11.9", "I10", "J45.909", "K21.9", "M54.5"], rows),
        "plan": rng.choice(["Gold Plus", "Basic", "Silver", "Family Saver"], rows),
        "region": rng.choice(["New York", "San Diego", "North West", "East Anglia"], rows),
        "visit_date": [str((visit + pd.Timedelta(days=int(d))).date()) for d in rng.integers(0, 1000, rows)],
        "version": [f"{a}.{b}.{c}" for a, b, c in rng.integers(0, 20, (rows, 3))],
        "ratio": rng.random(rows),
        "label": rng.choice(["yes", "no", "maybe"], rows),
        # harder: capitalised multi-word values, long unique keys, short sentences
        "city": [fake.city() for _ in range(rows)],
        "company": [fake.company() for _ in range(rows)],
        "job": [fake.job() for _ in range(rows)],
        "session": [fake.uuid4() for _ in range(rows)],
        "headline": [fake.sentence(nb_words=4) for _ in range(rows)],
    }
    for name, values in decoys.items():
        columns[name] = values
        truth[name] = "none"
    return pd.DataFrame(columns), truth


def privtrain_verdicts(frame: pd.DataFrame) -> dict[str, str]:
    from privtrain.data import pii

    return {f.column: f.kind for f in pii.detect(frame)}


def sdv_verdicts(frame: pd.DataFrame) -> dict[str, str]:
    """SDV's PII verdicts: a PII sdtype (or ``pii: true``), or the primary key it chose (typed ``id``)."""
    from sdv.metadata import Metadata

    from privtrain.data.pii import PII_SDTYPES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = Metadata.detect_from_dataframes({"t": frame}).to_dict()["tables"]["t"]
    out = {}
    for name, col in table["columns"].items():
        if col.get("pii") or col["sdtype"] in PII_SDTYPES or name == table.get("primary_key"):
            out[name] = SDV_KIND.get(col["sdtype"], col["sdtype"])
    return out


def score(truth: dict[str, str], verdicts: dict[str, str], detector: str) -> list[dict]:
    rows = []
    for kind, (obvious, _) in NAMES.items():
        cols = [c for c, k in truth.items() if k == kind]
        neutral = [c for c in cols if c != obvious]
        flagged_as = [c for c, v in verdicts.items() if v == kind]
        rows.append(
            {
                "kind": kind,
                "detector": detector,
                "recall_obvious": float(verdicts.get(obvious) == kind),
                "recall_neutral": sum(verdicts.get(c) == kind for c in neutral) / len(neutral),
                "recall_any": sum(c in verdicts for c in cols) / len(cols),
                "precision": (sum(truth[c] == kind for c in flagged_as) / len(flagged_as))
                if flagged_as
                else float("nan"),
                "flagged_as_kind": len(flagged_as),
            }
        )
    decoys = [c for c, k in truth.items() if k == "none"]
    rows.append(
        {
            "kind": "decoys (false positives)",
            "detector": detector,
            "recall_obvious": float("nan"),
            "recall_neutral": float("nan"),
            "recall_any": float("nan"),
            "precision": float("nan"),
            "flagged_as_kind": sum(c in verdicts for c in decoys),
        }
    )
    return rows


def scan_time(frame: pd.DataFrame, target: str, repeats: int, overrides: list[str], out: Path) -> list[dict]:
    """Whole ``privtrain.run("dp_sgd")`` vs the PII gate's share of it, measured inside the same runs."""
    import privtrain
    from privtrain.data import pii_gate

    spent = []
    original = pii_gate.check

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    pii_gate.check = timed
    rows = []
    try:
        for i in range(repeats + 1):  # the first run warms imports and caches: not counted
            spent.clear()
            start = time.perf_counter()
            slug = "".join(ch if ch.isalnum() else "_" for ch in target)
            privtrain.run("dp_sgd", ["recipe.progress=false", *overrides], output_dir=out / "runs" / f"{slug}-{i}")
            whole = time.perf_counter() - start
            if i:
                rows.append({"table": target, "run_s": whole, "scan_s": sum(spent), "ratio": sum(spent) / whole})
    finally:
        pii_gate.check = original
    return rows


def clean_csv(path: Path, rows: int = 10_000, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"m{i}": rng.normal(size=rows).round(4) for i in range(14)})
    for i in range(3):
        frame[f"code{i}"] = rng.choice(["A1", "B2", "C3", "D4"], rows)
    frame["region"] = rng.choice(["North West", "East Anglia", "South"], rows)
    frame["count"] = rng.integers(0, 50, rows)
    frame["y"] = rng.integers(0, 2, rows)
    frame.to_csv(path, index=False)
    return ["dataset=csv", f"dataset.path={path}", "dataset.target=y", "dataset.infer_schema=true"]


def markdown(quality: pd.DataFrame, timing: pd.DataFrame, args, decoys: list[str], flagged: dict[str, dict]) -> str:
    def pct(v):
        return "–" if pd.isna(v) else f"{v:.0%}"

    md = [
        "# PII detection: privtrain vs SDV, and the scan's cost\n",
        f"Machine: {machine()}\n",
        f"Command: `python benchmarks/pii_quality.py --rows {args.rows} --seed {args.seed} --repeats {args.repeats}`\n",
        f"{args.rows:,} generated values per column (Faker, seed {args.seed}); per kind one column under an obvious "
        "name and two under neutral names (`col_N` and a business-like name); "
        f"{len(decoys)} decoy columns. Recall: share "
        "of the kind's columns given the right kind; precision: share of columns given the kind that hold it.\n",
        "| kind | privtrain recall (obvious name) | privtrain recall (neutral) | privtrain precision | "
        "SDV recall (obvious name) | SDV recall (neutral) | SDV recall, any PII verdict | SDV precision |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    p, s = (quality[quality.detector == d].set_index("kind") for d in ("privtrain", "sdv"))
    for kind in NAMES:
        md.append(
            f"| {kind} | {pct(p.recall_obvious[kind])} | {pct(p.recall_neutral[kind])} | "
            f"{pct(p.precision[kind])} | {pct(s.recall_obvious[kind])} | {pct(s.recall_neutral[kind])} | "
            f"{pct(s.recall_any[kind])} | {pct(s.precision[kind])} |"
        )
    decoy = "decoys (false positives)"
    hits = {d: ", ".join(f"`{c}` as {v}" for c, v in flagged[d].items() if c in decoys) or "none" for d in flagged}
    md.append(
        f"\nDecoy columns ({', '.join(f'`{c}`' for c in decoys)}) flagged: privtrain "
        f"{int(p.flagged_as_kind[decoy])} ({hits['privtrain']}); SDV {int(s.flagged_as_kind[decoy])} "
        f"({hits['sdv']}).\n"
    )
    md += [
        "The values come from Faker's generators, which the detector's patterns were written against: these "
        "figures show which formats each detector covers, not its accuracy on real data (docs/pii.md lists "
        "the formats it misses).\n",
        "SDV types columns by name only: `full_name`, `customer` and `contact` are categorical, so SDV's "
        "synthesizers copy their values; a unique column may be chosen as primary key (`id`), which SDV "
        "regenerates but does not call a name or an e-mail (the 'any PII verdict' column counts it).\n",
        "## Time added by the PII scan to `privtrain run dp_sgd`\n",
        "| table | runs | whole run (s, median) | scan (s, median) | scan ÷ run |",
        "|---|---:|---:|---:|---:|",
    ]
    for table, group in timing.groupby("table", sort=False):
        md.append(
            f"| {table} | {len(group)} | {statistics.median(group.run_s):.2f} | "
            f"{statistics.median(group.scan_s) * 1000:.1f} ms | {statistics.median(group.ratio):.2%} |"
        )
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    out = out_dir("pii_quality")
    shutil.rmtree(out / "runs", ignore_errors=True)  # a run never overwrites another's folder
    os.environ["PRIVTRAIN_LEDGER"] = str(out / "ledger.db")  # its own ledger
    frame, truth = generate(args.rows, args.seed)
    frame.to_csv(out / "table.csv", index=False)
    frame = pd.read_csv(out / "table.csv")
    flagged = {"privtrain": privtrain_verdicts(frame), "sdv": sdv_verdicts(frame)}
    quality = pd.DataFrame([row for d, verdicts in flagged.items() for row in score(truth, verdicts, d)])
    quality.to_csv(out / "quality.csv", index=False)
    timing = pd.DataFrame(
        scan_time(frame, "digits (default run)", args.repeats, [], out)
        + scan_time(frame, "CSV 10,000 x 20", args.repeats, clean_csv(out / "clean.csv"), out)
    )
    timing.to_csv(out / "timing.csv", index=False)
    text = markdown(quality, timing, args, [c for c, k in truth.items() if k == "none"], flagged)
    (out / "README.md").write_text(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in ("README.md", "quality.csv", "timing.csv"):
        shutil.copy(out / name, RESULTS / name)
    print(text)
    return out


if __name__ == "__main__":
    main()
