"""The ClientApp: local training (optionally DP-SGD with a persistent accountant) and local evaluation.

Under local DP each client's Opacus accountant lives in its ``Context.state``,
so it survives from round to round (and across ClientApp processes in a
deployment); a client is never handed a fresh accountant mid-run.
"""

from __future__ import annotations

import json

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from privtrain.federated.job import Job

STATE_KEY = "privtrain"


def make_client_app(job: Job) -> ClientApp:
    """A ClientApp bound to ``job`` (the simulation's factory; the deployment app wraps it too)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        if job.central is not None and job.central.clipping_side == "client":
            from flwr.clientapp.mod import fixedclipping_mod

            # Flower's mod clips this client's update to the norm the DP wrapper sent.
            return fixedclipping_mod(msg, context, lambda m, c: handle_train(m, c, job))
        return handle_train(msg, context, job)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return handle_evaluate(msg, context, job)

    return app


def handle_train(msg: Message, context: Context, job: Job) -> Message:
    import torch

    from privtrain.federated.task import build_model, local_train, round_seed

    torch.set_num_threads(1)  # clients share the cores; parallelism comes from running several
    settings = job.settings
    k = int(context.node_config["partition-id"])
    client = job.client(k)
    model = build_model(job.model, job.shape)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    cfg = msg.content["config"]
    server_round = int(cfg["server-round"])
    state = _state(context)
    dp = job.local.client_dp(k) if job.local is not None else None
    outcome = local_train(model, client, settings, dp=dp, accountant_state=state.get("accountant"),
                          proximal_mu=float(cfg.get("proximal-mu", 0.0)), seed=round_seed(settings.seed, server_round, k))
    steps = int(state.get("steps", 0)) + outcome.steps
    metrics: dict = {"partition-id": k, "dp-steps": steps,
                     # equal weights under central DP: the DP wrappers' sensitivity assumes a plain mean
                     "weight": 1.0 if job.central is not None else float(len(client.y_train))}
    if dp is not None:  # the server turns "dp-steps" into epsilon; the accountant state stays here
        _save_state(context, {"accountant": _jsonable(outcome.accountant_state), "steps": steps})
    else:
        _save_state(context, {"steps": steps})
        if job.central is None and outcome.losses:  # a non-private statistic: only sent when nothing is private
            metrics["train-loss"] = float(sum(outcome.losses) / len(outcome.losses))
    content = RecordDict({"arrays": ArrayRecord(outcome.model.state_dict()), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def handle_evaluate(msg: Message, context: Context, job: Job) -> Message:
    import torch

    from privtrain.federated.task import build_model, evaluate

    torch.set_num_threads(1)
    k = int(context.node_config["partition-id"])
    client = job.client(k)
    model = build_model(job.model, job.shape)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    out = evaluate(model, client.x_eval, client.y_eval, job.shape["n_classes"])
    metrics = MetricRecord({"weight": float(out["n"]), "accuracy": out["accuracy"], "loss": out["loss"]})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)


def _state(context: Context) -> dict:
    if STATE_KEY not in context.state:
        return {}
    return json.loads(str(context.state[STATE_KEY]["json"]))


def _save_state(context: Context, value: dict) -> None:
    context.state[STATE_KEY] = ConfigRecord({"json": json.dumps(value)})


def _jsonable(state):
    """An Opacus accountant state_dict as JSON-ready values (tuples become lists)."""
    if state is None:
        return None
    return {"history": [list(h) for h in state["history"]], "mechanism": state["mechanism"]}
