"""Fit time of privtrain's GaussianCopula path vs calling SDV directly, same data, same process.

    python benchmarks/synthetic_overhead.py                 # breast_cancer and wine, 7 repeats
    python benchmarks/synthetic_overhead.py --repeats 3 --datasets wine

privtrain's path = SDV metadata detection + privtrain's PII check and retyping + building the
synthesizer from plain values + fit. The direct path = ``Metadata.detect_from_dataframes`` +
``GaussianCopulaSynthesizer(metadata).fit``. The two alternate (ABAB...) so drift on a shared
machine hits both; the medians are compared. Target: overhead <= 10%.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def direct(frame, table):
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metadata = Metadata.detect_from_dataframes({table: frame})
        GaussianCopulaSynthesizer(metadata).fit({table: frame})


def privtrain_path(frame, table):
    from privtrain.synthetic import metadata, sdv_models

    meta = metadata.detect(frame, table)
    meta, _ = metadata.mark_pii(meta, frame, table, check=True, skip={"target"})
    synth = sdv_models.build(
        "gaussian_copula",
        meta,
        params={"default_distribution": "beta"},
        common={"enforce_min_max_values": True, "enforce_rounding": True, "locales": ["en_US"]},
    )
    sdv_models.fit(synth, frame, table, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["breast_cancer", "wine"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from privtrain.data.builtin import load_builtin
    from privtrain.synthetic import quiet_logs

    quiet_logs()
    print("| dataset | rows x cols | SDV direct (s, median) | privtrain (s, median) | overhead |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        frame = load_builtin(name)[0]
        direct(frame, name), privtrain_path(frame, name)  # warm-up: imports and caches
        times = {"direct": [], "privtrain": []}
        for _ in range(args.repeats):
            for label, fn in (("direct", direct), ("privtrain", privtrain_path)):
                start = time.perf_counter()
                fn(frame, name)
                times[label].append(time.perf_counter() - start)
        a, b = statistics.median(times["direct"]), statistics.median(times["privtrain"])
        print(
            f"| {name} | {frame.shape[0]} x {frame.shape[1]} | {a:.3f} | {b:.3f} | {100 * (b - a) / a:+.1f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
