"""Federated learning on Flower (the ``federated`` recipe): partitioning, apps, accounting, engines.

Modules: ``partition`` (who holds which rows), ``task`` (plain PyTorch), ``accounting``
(central and local DP), ``planning`` (settings -> plans -> ledger charges), ``client_app`` /
``server_app`` (Flower Message API), ``simulation`` and ``deployment`` (the two engines),
``report`` and ``plots`` (artifacts). Importing this package imports neither torch nor flwr.
"""
