"""Examples of a user's own model and dataset for privtrain (see examples/README.md)."""
