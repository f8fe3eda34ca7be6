"""The pieces recipes are built from, kept out of them so each recipe reads top to bottom on a screen.

- :mod:`~privtrain.runs.resume`: loading and checking a checkpoint to continue from;
- :mod:`~privtrain.runs.dp_sgd`: DP-SGD's public training size, void guarantees, mechanism plan and report;
- :mod:`~privtrain.runs.synthetic`: a synthesizer's fit, outputs, scores, report and card.

The files every run leaves (config.yaml, run.json, metrics.json, the card, the checkpoint) are written by
:mod:`privtrain.artifacts.run_files`.
"""
