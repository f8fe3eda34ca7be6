"""Federated learning on Flower (the ``federated`` recipe): partitioning, apps, accounting, engines.

Modules: ``partition`` (which client holds which row: keyed per row), ``task`` (plain PyTorch),
``central`` (DP-FedAvg's client- and example-level accounting), ``accounting`` (local DP-SGD, from
the server's own message counts), ``planning`` (settings -> plans -> ledger charges),
``sampling`` (Poisson or fixed-cohort client sampling), ``aggregation`` (the noisy release,
FedAvg, FedAdam), ``rounds`` and ``server_app`` (privtrain's server loop on Flower's Message API),
``client_app``, ``simulation`` and ``runtime`` (in-process engine, one Ray runtime per process),
``deployment`` (real SuperLink + SuperNodes), ``report`` and ``plots`` (artifacts). Importing this
package imports neither torch nor flwr.
"""
