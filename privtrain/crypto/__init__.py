"""Encryption at rest for a run's artifacts: an authenticated file format, keys, and private files.

This package sits in the lowest layer (beside :mod:`privtrain.errors`) because the data layer must read
encrypted synthetic rows back (``dataset=synthetic``) and may not import the artifacts layer. The
run-level helpers (torch checkpoints, key rotation, ``privtrain keys``) live in :mod:`privtrain.artifacts`.
See docs/governance/encryption.md.
"""
