"""Monitoring past training: DP reference statistics, drift against them, and fairness on the held-out split.

- :mod:`privtrain.monitoring.bins`: the public bins of every column, from the schema, never from the rows.
- :mod:`privtrain.monitoring.reference`: the charged release of noisy histograms at training time
  (``monitor.reference=true``), written as ``reference_stats.json``.
- :mod:`privtrain.monitoring.drift`: ``privtrain monitor RUN_DIR rows.csv``: PSI per feature and for the
  predicted classes against the references; exit 1 on an alert.
- :mod:`privtrain.monitoring.fairness`: per-group accuracy and the largest gap (``dataset.sensitive``).

See docs/governance/monitoring.md and docs/governance/fairness.md.
"""
