"""The ClientApp: local training (optionally DP-SGD with a persistent accountant) and local evaluation.

Under local DP each client's Opacus accountant lives in its ``Context.state``, so it survives from
round to round (and across ClientApp processes in a deployment); a client is never handed a fresh
accountant mid-run. The server does not rely on it: it charges every client from the TRAIN messages
it sent. A reply carries the new weights and the client's partition id; the training loss only
under ``privacy=none`` (a statistic of the training rows that no guarantee covers). With
``privacy.clipping_side=client`` the client clips its own update to the norm the server sent.
"""

from __future__ import annotations

import json

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from privtrain.federated import residency
from privtrain.federated.job import Job
from privtrain.federated.records import scalar

STATE_KEY = "privtrain"


def make_client_app(job: Job) -> ClientApp:
    """A ClientApp bound to ``job`` (the simulation's factory; the deployment app wraps it too)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return handle_train(msg, context, job)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return handle_evaluate(msg, context, job)

    @app.query()
    def query(msg: Message, context: Context) -> Message:  # the residency check: metadata only, no rows read
        return residency.handle_query(msg, context, job)

    return app


def handle_train(msg: Message, context: Context, job: Job) -> Message:
    import torch

    from privtrain.federated.task import build_model, local_train, round_seed

    torch.set_num_threads(1)  # clients share the cores; parallelism comes from running several
    settings = job.settings
    k = int(context.node_config["partition-id"])
    residency.guard(context, settings, k)  # before a row is loaded
    client = job.client(k)
    model = build_model(job.model, job.shape)
    sent = msg.content.array_records["arrays"].to_torch_state_dict()
    model.load_state_dict(sent)
    cfg = msg.content.config_records["config"]
    server_round = int(scalar(cfg, "server-round"))
    metrics: dict = {"partition-id": k}
    if len(client.y_train) or job.local is not None:  # under local DP even without rows: its steps are public
        state = _state(context)
        dp = job.local.client_dp(k) if job.local is not None else None
        outcome = local_train(
            model,
            client,
            settings,
            dp=dp,
            accountant_state=state.get("accountant"),
            proximal_mu=float(scalar(cfg, "proximal-mu", default=0.0)),
            seed=round_seed(settings.seed, server_round, k),
        )
        model = outcome.model
        if dp is not None:  # kept across rounds; the server charges from its own counts, not from this
            _save_state(context, {"accountant": _jsonable(outcome.accountant_state)})
        if settings.privacy == "none" and outcome.losses:  # no guarantee covers it: sent only when nothing is private
            metrics["train-loss"] = float(sum(outcome.losses) / len(outcome.losses))
    new = model.state_dict()  # a client without training rows returns the model unchanged: update 0
    if "clipping-norm" in cfg:
        new = clip_update(sent, new, float(scalar(cfg, "clipping-norm")))
    content = RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def clip_update(sent: dict, new: dict, clipping_norm: float) -> dict:
    """``sent + clip(new - sent)``: the client's update clipped to ``clipping_norm`` (floating tensors only)."""
    import torch

    names = [k for k, v in new.items() if torch.is_floating_point(v)]
    deltas = {k: new[k].detach().double() - sent[k].double() for k in names}
    # summed in order from an exact zero, as Python's sum() would: a tensor start keeps the type a tensor
    squares = sum((torch.sum(d * d) for d in deltas.values()), torch.zeros((), dtype=torch.float64))
    norm = float(torch.sqrt(squares)) if deltas else 0.0
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    out = dict(new)
    for k in names:
        out[k] = (sent[k].double() + deltas[k] * scale).to(new[k].dtype)
    return out


def handle_evaluate(msg: Message, context: Context, job: Job) -> Message:
    import torch

    from privtrain.federated.task import build_model, evaluate

    torch.set_num_threads(1)
    k = int(context.node_config["partition-id"])
    residency.guard(context, job.settings, k)  # before a row is loaded
    client = job.client(k)
    out = {"n": 0, "accuracy": 0.0, "loss": 0.0}
    if len(client.y_eval):  # a client without local evaluation rows takes no part
        model = build_model(job.model, job.shape)
        model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        out = evaluate(model, client.x_eval, client.y_eval, job.shape["n_classes"])
    metrics = MetricRecord({"n": int(out["n"]), "accuracy": float(out["accuracy"]), "loss": float(out["loss"])})
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
