"""A separate process that charges the ledger, for the concurrency and crash tests.

usage: worker.py LEDGER RUN_ID SIGMA [--start-at UNIX_TIME] [--go-file PATH] [--hang]

LEDGER is an SQLite file or a ``postgresql://`` URL. Prints one JSON line: {"status":
"committed"|"refused"|"reserved", "message": ...}. With --go-file it opens the ledger, prints {"status":
"ready"} and waits until the file exists, so that every racer is ready before any reserves. With --hang
it reserves, prints "reserved", and sleeps until killed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for ledger_helpers
from ledger_helpers import charge, charging, gaussian  # noqa: E402
from privtrain import ledger
from privtrain.errors import BudgetExceeded


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("run_id")
    p.add_argument("sigma", type=float)
    p.add_argument("--start-at", type=float, default=0.0)
    p.add_argument("--go-file", default=None)
    p.add_argument("--hang", action="store_true")
    args = p.parse_args()
    c = charge(args.run_id, gaussian(args.sigma), epsilon=1.0)
    led = ledger.open(args.path)
    led.require_intact()  # walk the chain now, so the race below is about the reservation itself
    if args.go_file:
        print(json.dumps({"status": "ready"}), flush=True)
        deadline = time.time() + 600
        while not os.path.exists(args.go_file) and time.time() < deadline:
            time.sleep(0.005)
    time.sleep(max(0.0, args.start_at - time.time()))  # line the processes up to race
    try:
        with charging(led, c) as run:
            if args.hang:
                print(json.dumps({"status": "reserved", "entry": run.entry_id}), flush=True)
                time.sleep(600)
            run.commit(c.events, artifacts={"model.pt": "ab" * 32})
    except BudgetExceeded as exc:
        print(json.dumps({"status": "refused", "message": str(exc)}), flush=True)
        return 3
    print(json.dumps({"status": "committed", "entry": run.entry_id}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
