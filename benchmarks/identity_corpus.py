"""Identity through routine preprocessing, and what the stored sketch gives away: the derivation corpus and
the inversion attack, each repeated with fresh keys and fresh noise.

- corpus: every derivation of tests/ledger_helpers/corpus.py (a 3,000-row patients table, digits' 1,797
  images, a 3,000-row survey) compared with the noisy sketch of its registered base table: linked / total
  for careless, deliberate and control derivations, and per derivation how often it linked, its median
  estimated share and z;
- inversion: tests/ledger_helpers/inversion.py against the sketch of the patients table: rows recovered
  (membership claimed at >= 90% posterior, pool of 3,000 members and 3,000 others), cells recovered (a
  hidden cell guessed at >= 90% posterior from a prior below 50%), the largest likelihood ratio and the
  bound e^EPS_S; and the same attack on a sketch stored without noise.

    python benchmarks/identity_corpus.py [--repeat 5]

Writes out/identity_corpus/{corpus.csv,README.md}.
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import machine, out_dir, report

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's privtrain and test helpers
from ledger_helpers.corpus import BASES, DERIVATIONS, ID_COLUMNS  # noqa: E402
from ledger_helpers.inversion import cells_attack, rows_attack  # noqa: E402
from ledger_helpers.patients import patients  # noqa: E402

from privtrain.ledger import overlap as ov  # noqa: E402
from privtrain.ledger import sketch  # noqa: E402

DECLARED = {"survey: half, items recoded 0-4, id renamed (declared id column)": "RespondentID"}


def corpus(repeat: int) -> pd.DataFrame:
    bases = {name: make() for name, make in BASES.items()}
    work = Path(tempfile.mkdtemp(prefix="identity-corpus-"))
    frames = {name: make(bases[base], work) for name, _, base, make in DERIVATIONS}
    rows = []
    for rep in range(repeat):
        key = secrets.token_bytes(32)
        stored = {name: ov.register(ov.read(frame, key, ID_COLUMNS.get(name)), key) for name, frame in bases.items()}
        for name, kind, base, _ in DERIVATIONS:
            started = time.perf_counter()
            o = ov.compare(ov.read(frames[name], key, DECLARED.get(name)), stored[base], key)
            rows.append(
                {
                    "derivation": name,
                    "kind": kind,
                    "base": base,
                    "repeat": rep,
                    "linked": bool(o is not None and o.linked),
                    "share": None if o is None else round(o.fraction_of_new, 3),
                    "z": None if o is None else round(o.z, 1),
                    "seconds": time.perf_counter() - started,
                }
            )
    return pd.DataFrame(rows)


def inversion(repeat: int) -> pd.DataFrame:
    members, others = patients(3000, seed=0), patients(3000, seed=1)
    rows = []
    for rep in range(repeat):
        key = secrets.token_bytes(32)
        for eps in (sketch.EPS_S, math.inf):
            stored = ov.register(ov.read(members, key), key, eps_s=eps)
            found_rows = rows_attack(members, others, stored, key)
            found_cells = cells_attack(members, stored, key, n_rows=150 if math.isfinite(eps) else 40, seed=rep)
            rows.append(
                {
                    "sketch": f"noisy (eps_s = {eps:g})" if math.isfinite(eps) else "without noise",
                    "repeat": rep,
                    "rows recovered": found_rows["recovered"],
                    "of rows": found_rows["rows"],
                    "largest likelihood ratio": round(found_rows["max_ratio"], 2),
                    "cells recovered": found_cells["recovered"],
                    "of cells": found_cells["cells"],
                }
            )
    return pd.DataFrame(rows)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    out = out_dir("identity_corpus")
    found = corpus(args.repeat)
    found.to_csv(out / "corpus.csv", index=False)
    totals = (
        found.groupby("kind")
        .agg(linked=("linked", "sum"), total=("linked", "size"))
        .reindex(["careless", "deliberate", "control"])
        .reset_index()
    )
    per = (
        found.groupby(["kind", "derivation"], sort=False)
        .agg(linked=("linked", "mean"), share=("share", "median"), z=("z", "median"), seconds=("seconds", "median"))
        .reset_index()
    )
    per["linked"] = [f"{round(x * args.repeat)}/{args.repeat}" for x in per["linked"]]
    attack = inversion(args.repeat)
    summary = (
        attack.groupby("sketch", sort=False)
        .agg(
            **{
                "rows recovered (max)": ("rows recovered", "max"),
                "of rows": ("of rows", "first"),
                "cells recovered (max)": ("cells recovered", "max"),
                "of cells": ("of cells", "first"),
                "largest likelihood ratio": ("largest likelihood ratio", "max"),
            }
        )
        .reset_index()
    )
    text = (
        f"# Identity through preprocessing, and the inversion attack\n\nMachine: {machine()}. Command: "
        f"`python benchmarks/identity_corpus.py --repeat {args.repeat}` (fresh row key and fresh noise each "
        f"repeat). {len(DERIVATIONS)} derivations of a 3,000-row patients table, digits and a 3,000-row survey.\n\n"
        f"## Linked / total (derivations x repeats)\n\n{totals.to_markdown(index=False)}\n\n"
        f"## Per derivation (median estimated share of the derived table's rows, median z)\n\n"
        f"{per.round(3).to_markdown(index=False)}\n\n"
        f"## Inversion by a writer holding every key and every other row (max over {args.repeat} repeats)\n\n"
        f"{summary.to_markdown(index=False)}\n\nThe bound: a likelihood ratio of at most e^{sketch.EPS_S:g} = "
        f"{math.exp(sketch.EPS_S):.2f}, so no membership exceeds a posterior of "
        f"{math.exp(sketch.EPS_S) / (1 + math.exp(sketch.EPS_S)):.2f} from even odds.\n"
    )
    return report(out, text)


if __name__ == "__main__":
    main()
