"""Run artifacts: resolved config, metrics, checkpoints, model cards, hashes."""
